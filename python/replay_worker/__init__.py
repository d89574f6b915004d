"""replay_worker: the Python side of replay's operator protocol.

`/usr/bin/python3 -m replay_worker FILE` serves docs/protocol.md (version 1)
for a model file: a Python module with

    model()      -> torch.nn.Module   θ_0 is its state after torch.manual_seed(seed)
    datasets()   -> ((x_train, y_train), (x_test, y_test))   tensors, examples first
    loss         optional callable (output, target) -> mean batch loss;
                 default torch.nn.CrossEntropyLoss()
    classes      optional int (default: inferred from integer targets; 0 = regression)
    name         optional str (default: the file's stem)

Invariants:
  - A reply is a pure function of its request, the model file, its data and
    the fingerprint: every request carries its whole state, which the
    worker loads before computing; nothing of a request survives it.
  - Determinism: torch.use_deterministic_algorithms(True), a fixed number
    of threads (1 unless --threads), torch's generator seeded before every
    step from (run seed, step number) (worker.step_seed) and before every
    evaluation with 0.
  - θ is every tensor of state_dict (parameters and buffers) as float32,
    integer buffers exact (within ±2^24); the optimizer's state follows by
    the layout rule of docs/protocol.md (layout.py). A chain applied in one
    request equals the same chain split over several, bit for bit.
  - stdout carries protocol frames only; logs and the model file's prints
    go to stderr.

Only the standard library, Debian's python3-torch and python3-msgpack (and
python3-torchvision for the ResNet example). Run it with Debian's
/usr/bin/python3: a pyenv or venv python3 does not see Debian's packages.
"""
