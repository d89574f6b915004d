// Package report measures how stable a run's forward and backward
// trajectories are and writes the measures, and a verdict on each of the
// paper's claims, as Markdown.
//
// It is pure: it takes api.Point slices (as the daemon streams them) and
// writes to an io.Writer. Fetching trajectories is the caller's job
// (replayctl report).
//
// # Measures (per run, forward and backward side by side)
//
//   - Loss-change SD: the sample standard deviation of L(m_{i+1}) − L(m_i)
//     over consecutive measured training losses in the last half of the run
//     (steps > Steps/2). Losses are measured every eval_every steps, on the
//     same steps for both trajectories, so "step to step" means "measurement
//     to measurement"; the number of differences is reported.
//   - Step distance: the mean of ‖θ_n − θ_{n−1}‖ over the last Tail (100)
//     steps. For the backward trajectory this is ‖θ̃_n − θ̃_{n−1}‖, which is
//     exactly what shrinks when backward iterates converge to a point.
//   - Final and best test accuracy (NaN for regression runs, whose final and
//     best test loss are given instead), final training loss.
//
// # Claims and thresholds
//
// Verdicts are computed from the measures with the thresholds in
// Thresholds (DefaultThresholds documents the values and why); nothing is
// decided in advance. The default thresholds were fixed before the first
// reproduce run was measured and were not tuned on its results;
// replayctl report takes them as flags for anyone who disagrees. Each claim is "holds", "not shown" or "undetermined"
// (not enough data, e.g. no reset or too few measured losses).
//
//   - (a) backward is more stable than forward: the backward loss-change SD
//     is at most StableRatio × the forward one.
//   - (b) backward converges to a point: over the last Tail steps of the
//     run (inside its last anchor segment) the backward mean step distance
//     is at most ConvergeRatio × the forward one over the same steps, and it
//     is not growing (mean over the second half of the tail ≤ the mean over
//     the first half).
//   - (c) after a reset the backward trajectory converges again: for each
//     anchor segment that starts at a reset (segment ≥ 1) and has at least
//     MinSegment steps, the mean step distance over its last
//     min(Tail, len/2) steps is at most ConvergeRatio × forward's over the
//     same steps and at most DecayRatio × its own mean over as many steps
//     right after the reset. "Possibly elsewhere" is reported, not judged:
//     the distance between the segment's start point and its last iterate
//     when the caller supplies it, and the change of the training loss.
//
// Invariants: Analyze never modifies its input; points may arrive in any
// order (they are sorted by step, a copy); non-finite values are ignored
// by every measure (NaN means "not measured at this step").
package report
