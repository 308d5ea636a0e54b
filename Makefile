# virtmq — see README.md. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/virtmq/virtmq/internal/build.Version=$(VERSION) -X github.com/virtmq/virtmq/internal/build.Commit=$(COMMIT)
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
BINARIES := bin/virtmq bin/virtmq-hook bin/virtmq-agent
# Fuzzing runs on an execution budget, not a duration: Go 1.26's fuzz
# coordinator can report a worker it is stopping at the deadline as a failure
# ("context deadline exceeded", no crasher) on a loaded machine. Each budget
# is about 10 s of one target on 2 idle cores; FUZZSCALE multiplies them all
# (make fuzz FUZZSCALE=10 for a longer run).
FUZZSCALE ?= 1
FUZZTARGETS := ./internal/domxml:FuzzRewrite:500000 ./internal/domxml:FuzzParse:500000 ./policy:FuzzParse:300000 \
	./internal/guest:FuzzParseChannels:700000 ./internal/guest:FuzzParseInterrupts:500000 \
	./internal/guest:FuzzDecodeCapped:700000 ./internal/guest:FuzzConfigureReplies:20000 ./internal/verify:FuzzParseTapQueues:400000 \
	./cli:FuzzCommandLine:60000
FUZZMINIMIZE ?= 100x

.PHONY: all build test unit fuzz monitoring-test e2e chaos ansible-test bench bench-scale demo lint packages package-test clean FORCE

all: build

build: $(BINARIES)

bin/%: FORCE
	$(GOBUILD) -o $@ ./cmd/$*

# The README's test command: lint, unit tests (race detector), a short fuzz of
# every parser, the monitoring mixin's promtool tests, then the real-stack
# suite and the Ansible role's test (root only; they skip loudly otherwise).
test: lint unit fuzz monitoring-test e2e ansible-test

# The failpoints build (agent/failpoint_on.go) crashes the agent at each step
# boundary of the next-reboot path; its tests run in that build only.
unit:
	$(GO) test -race -count=1 ./...
	$(GO) test -race -count=1 -tags failpoints -run Failpoint ./agent/

# Each fuzz target runs briefly; a crash fails the build and leaves its input
# in testdata/fuzz/ to become a regression test.
fuzz:
	@set -e; for t in $(FUZZTARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; execs=$$(( $${rest##*:} * $(FUZZSCALE) )); \
	  if $(GO) test -list "^$$name$$" $$pkg 2>/dev/null | grep -qx "$$name"; then \
	    echo "fuzz $$pkg $$name ($$execs execs, minimize $(FUZZMINIMIZE))"; \
	    $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $${execs}x -fuzzminimizetime $(FUZZMINIMIZE) $$pkg; \
	  else echo "fuzz $$pkg $$name: no such target"; exit 1; fi; \
	done

# promtool check/test of packaging/monitoring (installs Debian's prometheus
# package for promtool when it is missing; needs root then).
monitoring-test:
	packaging/monitoring/test.sh

e2e: build
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "*** SKIPPING the real-stack suite (e2e): it needs root to run libvirtd, QEMU and a bridge."; \
	  echo "*** Run it with: sudo make e2e"; \
	else e2e/setup.sh && e2e/run.sh; fi

# A longer seeded churn run on the real stack (e2e/chaos.sh; make e2e runs a
# short one): make chaos SEED=N STEPS=N replays a run. The seed is printed.
SEED ?= $(shell date +%s)
STEPS ?= 30
chaos: build
	@if [ "$$(id -u)" != 0 ]; then echo "*** make chaos needs root (libvirtd, QEMU, a bridge): sudo make chaos"; exit 1; fi
	e2e/setup.sh && CHAOS_SEED=$(SEED) CHAOS_STEPS=$(STEPS) e2e/run.sh chaos

# The Ansible role (packaging/ansible) against this machine and the e2e
# libvirtd: install the .deb, observe, apply, idempotence, a broken policy
# refused, ansible-lint.
ansible-test:
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "*** SKIPPING the Ansible role's test (ansible-test): it needs root to install the .deb and run libvirtd."; \
	  echo "*** Run it with: sudo make ansible-test"; \
	else $(MAKE) packages && packaging/ansible/test.sh; fi

# The main job for a newcomer: sets up the sandbox (packages, guest) and
# narrates the manual procedure before and after virtmq on a real VM.
demo: build
	e2e/setup.sh
	e2e/demo.sh

bench: build
	bench/run.sh

# The no-root part of the agent bench alone: boot storms, idle CPU and the
# hostile-guest scenario against the fakes (bench/scale). `make bench` runs it too.
bench-scale:
	bench/scale.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') $$(git ls-files --others --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool -modfile=tools/go.mod staticcheck ./...
	tools/shellcheck.sh

packages:
	VERSION=$(VERSION) COMMIT=$(COMMIT) packaging/build.sh

package-test: packages
	packaging/test.sh

clean:
	rm -rf bin dist

FORCE:
