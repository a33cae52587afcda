# `make test` installs every test peer it needs and runs every test, lint and benchmark.
# The Cargo target directory may be shared across runs with CARGO_TARGET_DIR.

SHELL := /bin/bash
VENV := .venv
export DATAROOM_MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server

.PHONY: test peers lint unit bench scale crds

test: peers lint unit bench

# Python test peers in a venv inside the repo; re-installed when requirements change.
$(VENV)/.installed: requirements-test.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

peers: $(VENV)/.installed /usr/sbin/sshd /usr/bin/wrk
	@test -x $(DATAROOM_MOTO_SERVER) || { echo "moto_server missing after install"; exit 1; }
	@$(VENV)/bin/python -c "import helm_python, kubernetes_validate" || { echo "helm-python-sdk or kubernetes-validate missing after install"; exit 1; }

# OpenSSH's sshd (the SSH/SFTP test peer) and wrk (the load generator), from Debian; CI runs as root.
/usr/sbin/sshd:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client

/usr/bin/wrk:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

unit: peers
	cargo test

# CI runs the scale suite at SCALE_ROOMS rooms; `make scale` runs it at full size.
SCALE_ROOMS ?= 200

bench:
	cargo bench --bench poll --bench sandbox --bench admin
	DATAROOM_SCALE_ROOMS=$(SCALE_ROOMS) cargo bench --bench scale

scale:
	DATAROOM_SCALE_ROOMS=1000 cargo bench --bench scale

# Regenerate the committed CRDs after changing src/crd/.
crds:
	cargo run --quiet -- crdgen > crds/dataroom.dev.yaml
