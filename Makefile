# `make test` installs every test peer it needs and runs every test, lint and benchmark.
# The Cargo target directory may be shared across runs with CARGO_TARGET_DIR.

SHELL := /bin/bash
VENV := .venv
export DATAROOM_MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server

.PHONY: test peers fmt lint unit bench scale outage fuzz crds

test: peers fmt unit fuzz bench

# Two cargo settings for every build here, so that a clean clone of unchanged code builds nothing
# (CI clones afresh each run, and cargo's default freshness test, file times, rebuilt every
# workspace crate, the test binaries and the fuzz build each time: half of a warm run).
# Cargo's checksum freshness compares file contents instead. It is unstable, so RUSTC_BOOTSTRAP
# lets this stable toolchain take it (and the fuzzers' instrumentation flags). Both are set for
# every cargo command below: a build without them would rebuild proc-macro2, and all after it.
export RUSTC_BOOTSTRAP := 1
export CARGO_UNSTABLE_CHECKSUM_FRESHNESS := true

# Python test peers in a venv inside the repo; re-installed when requirements change.
$(VENV)/.installed: requirements-test.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

peers: $(VENV)/.installed /usr/sbin/sshd /usr/bin/wrk /usr/bin/dig /usr/bin/chromedriver
	@test -x $(DATAROOM_MOTO_SERVER) || { echo "moto_server missing after install"; exit 1; }
	@$(VENV)/bin/python -c "import helm_python, kubernetes_validate, kubernetes" || { echo "helm-python-sdk, kubernetes-validate or kubernetes missing after install"; exit 1; }
	@test -x $(VENV)/bin/schemathesis || { echo "schemathesis missing after install"; exit 1; }

# OpenSSH's sshd (the SSH/SFTP test peer), wrk (the load generator) and dig, from Debian; CI runs as root.
/usr/sbin/sshd:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client

/usr/bin/wrk:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk

# Headless Chromium and its WebDriver server (the console's browser test drives them), from Debian.
/usr/bin/chromedriver:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

# dig (the DNS client a user asks the sandbox's DNS server with), from Debian.
/usr/bin/dig:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsutils

fmt:
	cargo fmt --check

# `make lint` is clippy on its own. `make test` lints while it builds instead: clippy-driver wraps
# rustc for the workspace's own crates with warnings denied, so the tests' and benches' one build is
# also the lint, and no separate check build of the whole dependency graph runs (6 min of a cold run).
lint: fmt
	cargo clippy --workspace --all-targets -- -D warnings

LINTED := RUSTC_WORKSPACE_WRAPPER="$$(rustup which clippy-driver)" CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__

# Tests and benches share one build in Cargo.toml's `ci` profile (release optimisation, our crates'
# debug assertions on): a cold run compiles the dependency graph once for both, not twice.
PROFILE ?= ci

unit: peers
	$(LINTED) cargo test --workspace --profile $(PROFILE)

# cargo-fuzz from crates.io. The machine has only a stable toolchain: RUSTC_BOOTSTRAP (above) lets
# it take the nightly flags libFuzzer's instrumentation needs. No sanitizer (the code under test is safe Rust), and
# unoptimised (--dev): the build is minutes shorter, which matters more here than executions per second.
CARGO_FUZZ := $(HOME)/.cargo/bin/cargo-fuzz
# 30 s a target in `make test`; a longer campaign: `make fuzz FUZZ_SECONDS=600`.
FUZZ_SECONDS ?= 30

$(CARGO_FUZZ):
	cargo install --locked cargo-fuzz@0.13.2

# Each target runs FUZZ_SECONDS from the committed seeds; new inputs go to a scratch corpus.
fuzz: $(CARGO_FUZZ)
	cd fuzz && for target in audit_log remote_path config; do \
		corpus=$$(mktemp -d) && \
		cargo fuzz run --dev --sanitizer none $$target $$corpus seeds/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

# CI runs the scale suite at SCALE_ROOMS rooms and the EC2 outage for OUTAGE_SECS; `make scale`
# and `make outage` run them at full size (1,000 rooms; 5 minutes at production settings).
SCALE_ROOMS ?= 200
OUTAGE_SECS ?= 45

# --workspace, as `unit` has: the same feature unification, so the benches link the tests' build of
# the library instead of compiling it again.
BENCH := $(LINTED) cargo bench --workspace --profile $(PROFILE)

bench:
	DATAROOM_OUTAGE_SECS=$(OUTAGE_SECS) $(BENCH) --bench poll --bench sandbox --bench admin --bench auth --bench outage
	DATAROOM_SCALE_ROOMS=$(SCALE_ROOMS) $(BENCH) --bench scale

scale:
	DATAROOM_SCALE_ROOMS=1000 $(BENCH) --bench scale

outage:
	DATAROOM_OUTAGE_SECS=300 $(BENCH) --bench outage

# Regenerate the committed CRDs after changing crates/dataroom-operator/src/crd/.
crds:
	cargo run --quiet -- crdgen > crds/dataroom.dev.yaml
