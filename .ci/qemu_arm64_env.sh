#!/usr/bin/env bash
# Build (once) and print an emulated 64-bit ARM Linux Python environment for the
# device-side profiler (tfcompress issue 6): Debian bookworm arm64 + Python 3.11,
# numpy and ai-edge-litert 1.4.0 from their aarch64 wheels, nothing else
# (no TensorFlow, no tfcompress).
#
# usage: .ci/qemu_arm64_env.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${TFCOMPRESS_QEMU_DIR:-$HOME/.cache/tfcompress/qemu-arm64}
#   TFCOMPRESS_QEMU_MIRROR=URL overrides the Debian mirror (else taken from the apt config)
#
# stdout: exactly two lines, ROOT then SITE (absolute paths); progress goes to stderr.
# Run python under emulation with:
#   QEMU_LD_PREFIX=ROOT PYTHONPATH=SITE qemu-aarch64-static ROOT/usr/bin/python3.11 script.py
#
# Idempotent: a complete environment carries a marker file naming what it was built
# from; with the marker present nothing is downloaded. The environment is built in a
# temporary folder beside it and renamed into place only when complete and checked,
# so an interrupted run never leaves a half environment. Cold: ~1 min (plus ~15 s for
# the apt packages if missing); cached: well under a second.
set -euo pipefail

SUITE=bookworm
LITERT_VERSION=1.4.0
# numpy: ai-edge-litert 1.4.0 requires numpy>=1.23.2 and its extension modules are built
# against the numpy 2 C API; 2.2.6 is the newest numpy with a manylinux_2_17 aarch64 cp311 wheel.
NUMPY_VERSION=2.2.6
WHEEL_HASHES=(
  "ai-edge-litert==${LITERT_VERSION} --hash=sha256:131d1c12dedc0c45aa683106d71ea895117c2332b0efb52712965f8b5e63781d"
  "numpy==${NUMPY_VERSION} --hash=sha256:b64d8d4d17135e00c8e346e0a738deb17e754230d7e0810ac5012750bbd85a5a"
)
SPEC="tfcompress-qemu-arm64/1 debian=${SUITE} python=3.11 ai-edge-litert==${LITERT_VERSION} numpy==${NUMPY_VERSION}"

CACHE="${1:-${TFCOMPRESS_QEMU_DIR:-$HOME/.cache/tfcompress/qemu-arm64}}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
ENV_DIR="$CACHE/env"
MARKER="$ENV_DIR/.complete"

log() { echo "qemu_arm64_env: $*" >&2; }

print_paths() {
  echo "$ENV_DIR/root"
  echo "$ENV_DIR/site"
}

# Fast path: nothing to do.
if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$SPEC" ]; then
  print_paths
  exit 0
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    log "need root for: $* (and sudo is not available)"
    return 1
  fi
}

# --- host tools -------------------------------------------------------------
missing=()
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
DEBOOTSTRAP="$(command -v debootstrap || echo /usr/sbin/debootstrap)"
PY_HOST="$(command -v python3)"

# --- one builder at a time ----------------------------------------------------
exec 9>"$CACHE/.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$SPEC" ]; then  # built while we waited
  print_paths
  exit 0
fi

# Leftovers of a killed run (only a lock holder builds, so none of these is in use).
for stale in "$CACHE"/env.tmp.* "$CACHE"/env.old.*; do
  [ -e "$stale" ] || continue
  log "removing leftover $stale"
  rm -rf "$stale" 2>/dev/null || as_root rm -rf "$stale"
done

# --- Debian mirrors from the apt config (the main archive, not -security) ------
mirrors() {
  if [ -n "${TFCOMPRESS_QEMU_MIRROR:-}" ]; then
    echo "$TFCOMPRESS_QEMU_MIRROR"
  fi
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # one-line style: deb [options] URI SUITE COMPONENTS...
    sed -E -n 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+([^[:space:]]+).*/\2 \3/p' "$f"
  done | awk -v s="$SUITE" '$2 == s {print $1}'
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822 style: stanzas with Types/URIs/Suites; keep URIs of stanzas that list the suite
    awk -v s="$SUITE" '
      function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ")) print uris; types = uris = suites = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      /^Types:/  { sub(/^Types:[[:space:]]*/, "");  types = $0 }
      /^URIs:/   { sub(/^URIs:[[:space:]]*/, "");   uris = $0 }
      /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
      END { flush() }' "$f" | tr ' ' '\n'
  done
  echo "http://deb.debian.org/debian"
}

# --- build ------------------------------------------------------------------------
TMP="$(mktemp -d "$CACHE/env.tmp.XXXXXX")"
chmod 755 "$TMP"
cleanup() { rm -rf "$TMP" 2>/dev/null || as_root rm -rf "$TMP"; }
trap cleanup EXIT
start=$SECONDS

ok=""
declare -A tried=()
while read -r mirror; do
  [ -n "$mirror" ] || continue
  mirror="${mirror%/}"
  [ -z "${tried[$mirror]:-}" ] || continue
  tried[$mirror]=1
  log "debootstrap --foreign arm64 $SUITE from $mirror"
  rm -rf "$TMP/root"
  if as_root "$DEBOOTSTRAP" --foreign --arch=arm64 --variant=minbase --include=python3 \
      "$SUITE" "$TMP/root" "$mirror" >"$TMP/debootstrap.log" 2>&1; then
    ok=1
    break
  fi
  log "debootstrap from $mirror failed: $(tail -n 1 "$TMP/debootstrap.log")"
done < <(mirrors)
if [ -z "$ok" ]; then
  log "no Debian mirror worked; see the last log above (set TFCOMPRESS_QEMU_MIRROR to choose one)"
  exit 1
fi

# The first stage unpacks only the required packages; the second stage would need to run
# dpkg inside the emulated system. Python only needs the files, so unpack every .deb.
log "unpacking $(ls "$TMP/root/var/cache/apt/archives/"*.deb | wc -l) packages"
for deb in "$TMP/root/var/cache/apt/archives/"*.deb; do
  as_root dpkg-deb -x "$deb" "$TMP/root"
done
as_root rm -f "$TMP/root/var/cache/apt/archives/"*.deb
if [ "$(id -u)" -ne 0 ]; then
  as_root chown -R "$(id -u):$(id -g)" "$TMP/root"
fi
[ -x "$TMP/root/usr/bin/python3.11" ] || { log "no usr/bin/python3.11 in the arm64 root"; exit 1; }

log "downloading aarch64 wheels: ai-edge-litert==$LITERT_VERSION numpy==$NUMPY_VERSION"
printf '%s\n' "${WHEEL_HASHES[@]}" >"$TMP/requirements.txt"
mkdir -p "$TMP/wheels" "$TMP/site"
"$PY_HOST" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --platform manylinux_2_17_aarch64 --python-version 3.11 --implementation cp --abi cp311 \
  --require-hashes -r "$TMP/requirements.txt" -d "$TMP/wheels" 2> >(grep -v "is ignored: it is neither" >&2)
for whl in "$TMP/wheels/"*.whl; do
  "$PY_HOST" -m zipfile -e "$whl" "$TMP/site"
done
rm -rf "$TMP/wheels"

log "checking the emulated interpreter"
arch="$(QEMU_LD_PREFIX="$TMP/root" PYTHONPATH="$TMP/site" qemu-aarch64-static "$TMP/root/usr/bin/python3.11" -c \
  'import platform, numpy, ai_edge_litert.interpreter; print(platform.machine())')"
if [ "$arch" != "aarch64" ]; then
  log "emulated python reported machine '$arch', expected aarch64"
  exit 1
fi

# The root is only valid at its final path (QEMU_LD_PREFIX is absolute at run time, not
# baked in), so renaming the finished folder is safe.
echo "$SPEC" >"$TMP/.complete"
rm -f "$TMP/debootstrap.log" "$TMP/requirements.txt"
if [ -e "$ENV_DIR" ]; then
  # an old or unmarked environment: move it aside first, then swap in the new one
  old="$(mktemp -d "$CACHE/env.old.XXXXXX")"
  mv "$ENV_DIR" "$old/"
  mv "$TMP" "$ENV_DIR"
  as_root rm -rf "$old"
else
  mv "$TMP" "$ENV_DIR"
fi
trap - EXIT
log "built in $((SECONDS - start)) s at $ENV_DIR"
print_paths
