# One job per target. `make run` and `make test` are the two commands the
# README starts with; both install what is missing first (setup).
SHELL := /bin/bash
GO ?= go
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# chromium: the browser test of the web view (test-browser); nats-server: the
# remote-worker tests against an external JetStream server.
DEB_PACKAGES := libopenblas-dev dataset-fashion-mnist python3-numpy gcc pkg-config chromium nats-server \
	python3-torch python3-torchvision python3-msgpack
BIN := bin
# staticcheck is run from the Go module proxy at a pinned version (not
# pinned in go.mod: its dependencies would then constrain the project's).
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: setup build test test-python test-browser test-short bench lint fmt vet staticcheck run reproduce clean

## setup: install the Debian packages and Go modules the build and tests need.
setup:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "setup: installing $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(GO) mod download

## build: the two binaries into bin/, and a pure-Go build to keep it compiling.
build:
	$(GO) build -o $(BIN)/ ./cmd/replayd ./cmd/replayctl
	CGO_ENABLED=0 $(GO) build ./...

## test: everything CI runs: formatting, vet, staticcheck, the pure-Go build,
## the whole suite, and the race detector over the packages that share state
## between goroutines. -short there shortens the loops of the slowest of
## them under the race detector (ckpt's TestModel: 1 simulation instead of 4,
## TestCrashRecovery: 8 kills instead of 24; scheduler's TestResumeBitwise:
## 2 interruptions instead of 3); every test still runs.
test: setup lint
	CGO_ENABLED=0 $(GO) build ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -short -timeout 20m ./ckpt/ ./scheduler/ ./server/ ./api/
	$(MAKE) test-browser
	$(MAKE) test-python

## test-browser: the web view in a real headless Chromium, against the real
## replayd and `replayctl ui` (build tag browser); the test log says where
## the screenshot is (SCREENSHOT=path to choose).
SCREENSHOT ?= $(CURDIR)/$(BIN)/replay-ui.png
test-browser: setup
	@mkdir -p $(BIN)
	$(GO) test -tags browser -run '^TestBrowser' -count=1 -timeout 10m -v ./cmd/replayctl/ -args -screenshot $(SCREENSHOT)

## test-python: the Python worker's unittest suite (python/tests), with
## Debian's interpreter: python3 on PATH may be a pyenv or venv build that
## cannot see python3-torch.
test-python: setup
	cd python && /usr/bin/python3 -m unittest discover -s tests -t .

test-short:
	$(GO) test -count=1 -short ./...

## bench: the figures in the README's performance section.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./nn/ ./replay/ ./ckpt/
	$(GO) test -run '^$$' -bench . -benchmem ./scheduler/

## lint: gofmt -s, go vet and staticcheck; each fails on any finding.
lint: fmt vet staticcheck

fmt:
	@out=$$(gofmt -s -l .); if [ -n "$$out" ]; then echo "gofmt -s needed in:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(STATICCHECK) ./...

## run: the main job: replayd --window 256 with the paper's Fashion-MNIST run.
run: setup build
	./scripts/main.sh

## reproduce: the paper's runs, figures and results/REPORT.md.
reproduce: setup build
	./scripts/reproduce.sh

clean:
	rm -rf $(BIN)
