# esgflow — the single front door. `make run` and `make test` are the two commands a newcomer needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MUSL_TARGET := x86_64-unknown-linux-musl
# The official API definitions the stand-ins check every request against (tests/contracts.rs).
TCCLI_VERSION := 3.1.189.1
TCCLI_WHEEL := .tools/tccli-$(TCCLI_VERSION)-py2.py3-none-any.whl
RELEASE_DIR := target/$(MUSL_TARGET)/release
FUNCTIONS   := audit lookup sync
CARGO       ?= cargo
# `make run`'s build: the `local` profile (Cargo.toml), the code a replay runs optimised.
ESGFLOW     := target/local/esgflow

# CI builds once from a fresh clone: incremental compilation only writes caches nobody reads
# (the test build of the workspace crates: 35 s instead of 43 s).
ifdef CI
export CARGO_INCREMENTAL := 0
endif

.PHONY: help setup setup-test setup-deploy build test test-long lint unit package package-check run fuzz-cmin bench sample clean deploy destroy measure fuzz openapi

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: ## what `make run` needs: Rust with cargo (nothing else is installed)
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }

setup-test: setup ## what `make test` adds: the musl target, rustfmt/clippy, curl, musl-tools, redis-server, chromium and chromedriver, pip and the pinned tccli API definitions, npm and Tencent's component toolkit (tests/toolkit)
	rustup target list --installed | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)
	rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@missing=""; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v musl-gcc >/dev/null || missing="$$missing musl-tools"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	fi
	@# The official API definitions (tccli's api.json/examples.json), read from the wheel itself.
	@[ -f $(TCCLI_WHEEL) ] || python3 -m pip download --quiet --no-deps --only-binary=:all: --dest .tools tccli==$(TCCLI_VERSION)
	@# The code Tencent's scf component runs, pinned by tests/toolkit/package-lock.json.
	@[ tests/toolkit/node_modules/.package-lock.json -nt tests/toolkit/package-lock.json ] || npm ci --prefix tests/toolkit --no-audit --no-fund --loglevel=error

setup-deploy: setup ## what `make deploy` adds: npm and the serverless CLI (serverless-cloud-framework, `npm install` in deploy/)
	@command -v npm >/dev/null || { \
	  echo "installing: npm"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq npm; }
	@[ -x deploy/node_modules/.bin/scf ] || npm install --prefix deploy --no-audit --no-fund --loglevel=error

build: setup ## build the CLI and the function binaries (the `local` profile: what a replay runs optimised, no debug information)
	$(CARGO) build --profile local --workspace --bins

lint: setup-test ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The end-to-end tests mostly wait on the processes and servers they start, so they run four at a
# time on the 2-core machine (the integration binary: 67 s with two, 30 s with four).
TEST_THREADS ?= 4

# The binaries the tests run are built with the tests (`--bins --tests`): one feature resolution
# for both, so nothing is compiled twice.
unit: setup-test package-check ## all tests (unit, runtime protocol, end-to-end under the emulator, packaging)
	$(CARGO) build --workspace --bins --tests
	$(CARGO) test --workspace -- --test-threads=$(TEST_THREADS)

test: lint unit ## everything CI runs: lint, the packages (package-check), all tests

test-long: setup-test ## before a release: the soak run and the replay of every fuzz corpus file (the repository's and FUZZ_CORPUS, what `make fuzz` found)
	$(CARGO) build --workspace --bins
	ESGFLOW_FUZZ_CORPUS="$(FUZZ_CORPUS)" $(CARGO) test --test integration -- --ignored

# The packages `make test` checks (tests/package.rs runs the same build): the dev profile for musl,
# each function's binary stripped. It shares the build scripts and proc macros the test build
# compiles for the host (a profile of its own would compile them again): 62 s instead of 85 s.
PACKAGE_CHECK_ARGS := --target $(MUSL_TARGET) $(foreach f,$(FUNCTIONS),-p esgflow-$(f) --config 'profile.dev.package.esgflow-$(f).strip="symbols"')

package-check: setup-test ## the packages `make test` checks: dev profile, static musl, stripped (quick to build)
	$(CARGO) build $(PACKAGE_CHECK_ARGS)

package: setup-test ## one zip per function under dist/: static musl `bootstrap`, mode 0755, at the zip root
	$(CARGO) build --release --target $(MUSL_TARGET) $(addprefix -p esgflow-,$(FUNCTIONS))
	$(CARGO) run --quiet --bin esgflow -- package --bin-dir $(RELEASE_DIR) --out-dir dist

run: build ## replay the bundled sample flow logs through the real audit function under the emulator
	$(ESGFLOW) replay samples/flowlogs.txt --snapshot samples/snapshot.json --records out/records.jsonl --store out/esgflow.db --alerts

deploy: package $(if $(DRY_RUN),,setup-deploy) ## deploy the whole stack in template.yaml: bucket, CLS topics and indexes, CAM roles, the functions (DRY_RUN=1: read only, print what would be done)
	$(CARGO) run --quiet --bin esgflow -- deploy --template template.yaml --out dist/deploy $(if $(DRY_RUN),--dry-run)

destroy: $(if $(DRY_RUN),,setup-deploy) ## remove the deployed functions, roles and policies (DELETE_LOGS=1: also the topics and their logs; DELETE_SNAPSHOTS=1: also the bucket and its snapshots; DRY_RUN=1: read only)
	$(CARGO) run --quiet --bin esgflow -- destroy --template template.yaml --out dist/deploy $(if $(DRY_RUN),--dry-run) $(if $(DELETE_LOGS),--delete-logs) $(if $(DELETE_SNAPSHOTS),--delete-snapshots)

measure: package ## release health check: zip and binary sizes, init time (median of 20, with and without each account's snapshot), audit peak RSS, lookup peak RSS under the heaviest requests, the shipped musl build against a glibc build
	$(CARGO) build --quiet --profile local --bin esgflow
	$(CARGO) build --quiet --release -p esgflow-audit -p esgflow-lookup
	$(ESGFLOW) measure --bin-dir $(RELEASE_DIR) --glibc-dir target/release --dist dist

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := cls_event flow_record snapshot_values apigw_request explain_body judge audit
# Where `make fuzz` keeps what it finds: outside the repository, which holds only the minimised set.
FUZZ_CORPUS ?= target/fuzz-corpus

fuzz: ## run every cargo-fuzz target for FUZZ_SECONDS (default 60) each, on nightly; new inputs go to FUZZ_CORPUS (outside the repository)
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzzing $$t for $(FUZZ_SECONDS) s"; \
	  mkdir -p $(FUZZ_CORPUS)/$$t; \
	  $(CARGO) +nightly fuzz run $$t $(FUZZ_CORPUS)/$$t fuzz/corpus/$$t fuzz/seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 -max_len=262144 -timeout=10 || exit 1; \
	done

fuzz-cmin: ## minimise fuzz/corpus to the inputs that cover the same edges, taking in what `make fuzz` found that adds coverage (cargo fuzz cmin, edges only)
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_CORPUS)/$$t; \
	  $(CARGO) +nightly fuzz run $$t fuzz/corpus/$$t $(FUZZ_CORPUS)/$$t -- -merge=1 -use_counters=0 -rss_limit_mb=2048 -max_len=262144 -timeout=10 || exit 1; \
	  $(CARGO) +nightly fuzz cmin $$t fuzz/corpus/$$t -- -use_counters=0 -rss_limit_mb=2048 -max_len=262144 -timeout=10 || exit 1; \
	done

bench: ## benchmarks: engine (100/1k/10k rules vs the naive evaluator, compile), audit pipeline vs floor, /v1/explain, the local records store at 1,000,000 records
	$(CARGO) bench -p esgflow-local --benches

openapi: setup ## regenerate openapi.json from the code (routes, parameters, answer types)
	UPDATE_OPENAPI=1 $(CARGO) test --test integration openapi::the_committed_document_is_the_generated_one

sample: build ## regenerate samples/ (export, flow logs) and rebuild samples/snapshot.json from the export
	python3 samples/generate.py
	$(ESGFLOW) snapshot build --from samples/export --out samples/snapshot.json --taken-at 2025-11-24T00:00:00Z

clean: ## remove build output
	$(CARGO) clean
	rm -rf dist out
