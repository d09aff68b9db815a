#!/usr/bin/env bash
# What `make test` and `.ci/run` need outside Python, in one place.
#
#   tools/setup.sh          install what is missing from Debian's packages (as root, or with
#                           password-less sudo), start PostgreSQL and create database `test`
#   tools/setup.sh --check  only look; list what is missing
#
# Where something is missing and cannot be installed here, it prints one line naming the
# missing tools and the command that installs them, and exits 1, before any test runs.
# RINGWATCH_SETUP_INSTALL=0 forbids installing; RINGWATCH_TEST_PG_URL set: PostgreSQL is
# elsewhere, so it is neither checked nor started here.
set -uo pipefail

mode=install
[ "${1:-}" = "--check" ] && mode=check
[ "${RINGWATCH_SETUP_INSTALL:-1}" = "0" ] && mode=check
[ "${RINGWATCH_SETUP_SBIN:-1}" = "0" ] || export PATH="$PATH:/usr/sbin:/usr/local/sbin"
chromium="${RINGWATCH_CHROMIUM:-/usr/bin/chromium}"
system_python="${RINGWATCH_SYSTEM_PYTHON:-/usr/bin/python3}"

has() { command -v "$1" >/dev/null 2>&1; }
has_gst_rtsp() {
  [ -x "$system_python" ] && "$system_python" -c \
    "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" \
    >/dev/null 2>&1
}

# tool name | test | Debian packages
missing_tools=()
missing_pkgs=()
want() { # name, packages..., test is the function/command in $check
  local name=$1; shift
  if ! eval "$check"; then missing_tools+=("$name"); missing_pkgs+=("$@"); fi
}
check="has mosquitto";      want mosquitto mosquitto
check="has nats-server";    want nats-server nats-server
check="has ffmpeg";         want ffmpeg ffmpeg
check='[ -x "$chromium" ]'; want chromium chromium
check="has_gst_rtsp";       want "gstreamer-rtsp-server" python3-gi gir1.2-gst-rtsp-server-1.0 \
  gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-bad gstreamer1.0-libav
if [ -z "${RINGWATCH_TEST_PG_URL:-}" ]; then
  check="has pg_ctlcluster && has psql"; want postgresql postgresql
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif has sudo && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 1; fi
}
can_install() { [ "$mode" = install ] && has apt-get && { [ "$(id -u)" = 0 ] || { has sudo && sudo -n true 2>/dev/null; }; }; }

if [ ${#missing_tools[@]} -gt 0 ]; then
  if can_install; then
    echo "setup: installing ${missing_pkgs[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    { as_root apt-get update -qq && as_root apt-get install -y -qq "${missing_pkgs[@]}"; } >/dev/null \
      || { echo "setup: apt-get could not install ${missing_pkgs[*]}; try: sudo apt-get install -y ${missing_pkgs[*]}"; exit 1; }
  else
    list=$(IFS=,; echo "${missing_tools[*]}" | sed "s/,/, /g")
    echo "setup: missing $list; install with: sudo apt-get install -y ${missing_pkgs[*]}"
    exit 1
  fi
fi
[ "$mode" = check ] && exit 0

# PostgreSQL at 127.0.0.1:5432 with database `test` (trust auth), unless told it is elsewhere.
[ -n "${RINGWATCH_TEST_PG_URL:-}" ] && exit 0
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$version" ] || ! as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1; then
    echo "setup: PostgreSQL is not running at 127.0.0.1:5432; start it with: sudo pg_ctlcluster ${version:-15} main start"
    exit 1
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
if ! psql -h 127.0.0.1 -U postgres -lqt 2>/dev/null | cut -d'|' -f1 | grep -qw test; then
  createdb -h 127.0.0.1 -U postgres test 2>/dev/null \
    || { echo "setup: cannot create database test; run: createdb -h 127.0.0.1 -U postgres test"; exit 1; }
fi
exit 0
