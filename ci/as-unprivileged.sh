#!/usr/bin/env bash
# Runs a command as `memrepro-ci`, an unprivileged member of the docker group, as GitHub's
# hosted runners run jobs (their `runner` user), so that a root-only assumption fails here
# before it fails there. Uses this machine's Rust toolchain and CARGO_TARGET_DIR (nothing is
# rebuilt). Needs root; as anyone else the command simply runs, already unprivileged.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "ci/as-unprivileged: already running as $(id -un)"
  exec "$@"
fi

user=memrepro-ci
id -u "$user" >/dev/null 2>&1 || useradd --create-home --groups docker "$user"
cargo_home=$(dirname "$(dirname "$(command -v cargo)")")
rustup_home=$(rustup show home 2>/dev/null || echo "$HOME/.rustup")
# The toolchain and the crates' sources live under root's home here: the user must reach them.
chmod o+x "$HOME"
chmod -R o+rX "$cargo_home" "$rustup_home"
# Every unprivileged process needs a working /dev/null (a regular file in its place, left by a
# rename over it, makes them fail with EACCES).
[ -c /dev/null ] || { rm -f /dev/null; mknod -m 666 /dev/null c 1 3; }
# The clone and the target directory go to the user for the command, and back afterwards (git
# refuses to work in a repository another user owns).
owner=$(stat -c %u:%g .)
target_owner=$(stat -c %u:%g "${CARGO_TARGET_DIR:?}")
chown -R "$user" "$CARGO_TARGET_DIR" .
trap 'chown -R "$owner" . && chown -R "$target_owner" "$CARGO_TARGET_DIR"' EXIT

echo "ci/as-unprivileged: running as $user (uid $(id -u "$user"), groups $(id -Gn "$user")): $*"
runuser -u "$user" -- env HOME="/home/$user" CARGO_HOME="$cargo_home" RUSTUP_HOME="$rustup_home" \
  PATH="$cargo_home/bin:$PATH" CARGO_TARGET_DIR="$CARGO_TARGET_DIR" CARGO_TERM_COLOR=never CI="${CI:-}" "$@"
