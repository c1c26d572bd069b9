#!/usr/bin/env bash
# Scan benchmark: `portcullis scan --archive` against osv-scanner v2, offline,
# on the same images with the same OSV records. Prints wall time, peak RSS and
# CPU (medians over RUNS runs), the ratios portcullis/osv-scanner, and the
# differences between the two tools' inventories and findings.
#
#   sudo test/bench/scan/run.sh            # from anywhere in the repository
#   RUNS=9 KEEP=1 test/bench/scan/run.sh   # more runs; keep the work directory
#
# Set-up (needs network: the Debian mirror apt uses, the Go module proxy) takes
# 2-5 minutes the first time (debootstrap about 1 min, building osv-scanner
# about 3 min; Go's caches make later runs faster). The measured scans then run
# with no network at all (in a fresh network namespace when unshare works).
# Needs root (debootstrap, apt-get), Go on PATH, about 1 GB in $TMPDIR.
#
# Environment:
#   RUNS          timed runs per tool and image (default 5), after one warm-up
#   MIRROR        Debian mirror for debootstrap (default: the one apt uses)
#   OSV_SCANNER   an osv-scanner v2 binary to use instead of building one
#   KEEP=1        keep the work directory (images, databases, reports)
#   TMPDIR        where the work directory goes
set -euo pipefail

RUNS=${RUNS:-5}
OSV_SCANNER_MODULE=github.com/google/osv-scanner/v2/cmd/osv-scanner@v2.6.0
OSV_SCANNER_TOOLCHAIN=go1.27.3 # osv-scanner v2.6.0 needs Go 1.27
VULNDB_MODULE=golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018
# An old golang.org/x/text and golang.org/x/net, both with known vulnerabilities.
GOAPP_DEPS=(golang.org/x/text@v0.3.5 golang.org/x/net@v0.0.0-20210226172049-e18ecbb05110)
SCAN_TIMEOUT=600 # seconds, per scan

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
DEBIAN_OSV=${DEBIAN_OSV:-$ROOT/../shared/testdata/osv/debian}

log() { printf '>> %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (debootstrap and apt-get need it)"
command -v go >/dev/null || die "go is not on PATH"
[[ -d $DEBIAN_OSV ]] || die "no Debian OSV records in $DEBIAN_OSV (set DEBIAN_OSV)"
DEBIAN_OSV=$(cd "$DEBIAN_OSV" && pwd -P)
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"

missing=()
command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]})); then
	log "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } ||
		die "could not install ${missing[*]}"
fi
export PATH=$PATH:/usr/sbin:/sbin

T=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-scanbench.XXXXXX")
cleanup() {
	# debootstrap mounts /proc and /sys in the target; if it died, they
	# may still be there. Never follow a mount while deleting.
	if command -v findmnt >/dev/null; then
		{ findmnt -rno TARGET | grep -F "$T/" | sort -r | while read -r m; do umount -l "$m" || true; done; } 2>/dev/null || true
	fi
	if [[ ${KEEP:-0} == 1 ]]; then
		log "kept $T"
	else
		rm -rf --one-file-system "$T"
	fi
}
trap cleanup EXIT
mkdir -p "$T/bin" "$T/home"

# --- the Debian mirror apt uses --------------------------------------------
apt_mirror() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		# deb822: the URIs of a stanza whose Suites include bookworm (not -security).
		uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \t\n]|-updates|$)/ && /Types:[^\n]*deb([ \t\n]|$)/ && !/debian-security/ {
			if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", s); print s; exit } }' "$f")
		[[ -n $uri ]] && { echo "$uri"; return; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		uri=$(awk '$1=="deb" && $0 ~ /bookworm/ && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")
		[[ -n $uri ]] && { echo "$uri"; return; }
	done
	echo http://deb.debian.org/debian
}
MIRROR=${MIRROR:-$(apt_mirror)}

# --- tools -----------------------------------------------------------------
log "building portcullis and benchtool from $ROOT"
(cd "$ROOT" && go build -o "$T/bin/portcullis" ./cmd/portcullis && go build -o "$T/bin/benchtool" ./test/bench/scan/benchtool)
PORTCULLIS_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$ROOT" && git status --porcelain 2>/dev/null | head -1) ]]; then PORTCULLIS_REV+="+uncommitted changes"; fi

if [[ -n ${OSV_SCANNER:-} ]]; then
	cp "$OSV_SCANNER" "$T/bin/osv-scanner"
else
	log "building osv-scanner ($OSV_SCANNER_MODULE, $OSV_SCANNER_TOOLCHAIN; a few minutes the first time)"
	(cd "$T" && GOWORK=off GOTOOLCHAIN=$OSV_SCANNER_TOOLCHAIN GOBIN=$T/bin timeout 1200 go install "$OSV_SCANNER_MODULE") ||
		die "could not build osv-scanner"
fi
OSV_SCANNER_VERSION=$("$T/bin/osv-scanner" --version 2>/dev/null | head -1)

# --- OSV data: the same records for both tools -----------------------------
log "fetching $VULNDB_MODULE"
VULNDB_DIR=$(cd "$T" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "$VULNDB_MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
[[ -d $VULNDB_DIR/data/osv ]] || die "no data/osv in $VULNDB_MODULE"
"$T/bin/benchtool" osvdb -out "$T/osvdb" "$DEBIAN_OSV" "$VULNDB_DIR/data/osv" >&2

# --- images ----------------------------------------------------------------
log "debootstrap --variant=minbase bookworm from $MIRROR (about a minute)"
if ! timeout 900 debootstrap --variant=minbase bookworm "$T/rootfs" "$MIRROR" >"$T/debootstrap.log" 2>&1; then
	tail -20 "$T/debootstrap.log" >&2
	die "debootstrap failed with mirror $MIRROR (set MIRROR)"
fi
"$T/bin/benchtool" image -dir "$T/rootfs" -out "$T/debian.tar" -tag bench.test/debian:bookworm-minbase
# Synthetic, for the findings comparison only: the Debian records' fixed
# versions all predate bookworm, so on the real image only unfixed records
# match. Here glibc and util-linux are set back to older versions (each
# binary keeping its own epoch, as bsdutils's "1:" that util-linux lacks).
mkdir -p "$T/aged/etc" "$T/aged/usr/lib" "$T/aged/var/lib/dpkg"
cp "$T/rootfs/usr/lib/os-release" "$T/aged/usr/lib/os-release"
ln -s ../usr/lib/os-release "$T/aged/etc/os-release"
"$T/bin/benchtool" status -in "$T/rootfs/var/lib/dpkg/status" -out "$T/aged/var/lib/dpkg/status" -set glibc=2.31-13 -set util-linux=2.36.1-7
"$T/bin/benchtool" image -dir "$T/aged" -out "$T/debian-aged.tar" -tag bench.test/debian:aged
ROOTFS_MB=$(du -sm --apparent-size "$T/rootfs" | cut -f1)
DEBIAN_PKGS=$(grep -c '^Package:' "$T/rootfs/var/lib/dpkg/status")
rm -rf --one-file-system "$T/rootfs"

log "building the Go program (${GOAPP_DEPS[*]})"
mkdir -p "$T/goapp" "$T/goroot/usr/local/bin"
cat >"$T/goapp/main.go" <<'EOF'
package main

import (
	"fmt"
	"os"

	"golang.org/x/net/html"
	"golang.org/x/text/language"
)

func main() {
	t, err := language.Parse(os.Args[len(os.Args)-1])
	fmt.Println(t, err)
	doc, err := html.Parse(os.Stdin)
	fmt.Println(doc != nil, err)
}
EOF
printf 'module bench.test/goapp\n\ngo 1.21\n' >"$T/goapp/go.mod"
(cd "$T/goapp" && export GOWORK=off GOTOOLCHAIN=local && go get "${GOAPP_DEPS[@]}" && go mod tidy &&
	CGO_ENABLED=0 go build -trimpath -o "$T/goroot/usr/local/bin/app" .) >"$T/goapp.log" 2>&1 ||
	{ cat "$T/goapp.log" >&2; die "could not build the Go program"; }
"$T/bin/benchtool" image -dir "$T/goroot" -out "$T/goapp.tar" -tag bench.test/goapp:1

# --- portcullis's database: imported once, like osv-scanner's download -----
import_start=$EPOCHREALTIME
/usr/bin/time -v -o "$T/import.time" "$T/bin/portcullis" db import --data "$T/pdata" "$T"/osvdb/osv-scalibr/*/all.zip >"$T/import.out" 2>&1 ||
	{ cat "$T/import.out" >&2; die "portcullis db import failed"; }
import_end=$EPOCHREALTIME

# --- measurement: no network from here on -----------------------------------
measure() {
	set -euo pipefail
	local image tool order i
	# run_one IMAGE TOOL OUT: one scan, measured; appends a results line
	run_one() {
		local image=$1 tool=$2 out=$3 archive=$T/$1.tar rc=0 start end
		local -a cmd
		case $tool in
		portcullis) cmd=("$T/bin/portcullis" scan --data "$T/pdata" --archive "$archive" --format json) ;;
		osv-scanner) cmd=("$T/bin/osv-scanner" scan image --archive "$archive" --offline --local-db-path "$T/osvdb" --format json) ;;
		osv-scanner-all) cmd=("$T/bin/osv-scanner" scan image --archive "$archive" --offline --local-db-path "$T/osvdb" --format json --all-packages --all-vulns) ;;
		esac
		start=$EPOCHREALTIME
		HOME=$T/home XDG_CACHE_HOME=$T/home/.cache timeout "$SCAN_TIMEOUT" /usr/bin/time -v -o "$T/time.txt" "${cmd[@]}" >"$out" 2>"$out.stderr" || rc=$?
		end=$EPOCHREALTIME
		# osv-scanner exits 1 when it found vulnerabilities.
		if ((rc != 0)) && ! [[ $tool == osv-scanner* && $rc == 1 ]]; then
			cat "$out.stderr" >&2
			echo "run.sh: $tool on $image exited $rc" >&2
			return 1
		fi
		awk -v img="$image" -v tool="$tool" -v s="$start" -v e="$end" -F': ' '
			/Maximum resident set size/ { rss = $2 }
			/User time/ { cpu += $2 } /System time/ { cpu += $2 }
			END { printf "%s %s %.4f %d %.2f\n", img, tool, e - s, rss, cpu }' "$T/time.txt"
	}
	for image in debian goapp debian-aged; do
		echo ">> $image: warm-up runs (reports kept for the comparison)" >&2
		run_one "$image" portcullis "$T/$image.portcullis.json" >/dev/null
		run_one "$image" osv-scanner-all "$T/$image.osv-scanner.json" >/dev/null
		[[ $image == debian-aged ]] && continue # for the comparison only
		echo ">> $image: $RUNS timed runs per tool" >&2
		for ((i = 0; i < RUNS; i++)); do
			# Alternate which tool goes first, so drift hits both.
			if ((i % 2)); then order="osv-scanner portcullis"; else order="portcullis osv-scanner"; fi
			for tool in $order; do
				run_one "$image" "$tool" "$T/out.json" >>"$T/results.txt"
			done
		done
	done
}
export T RUNS SCAN_TIMEOUT
export -f measure
NETWORK="no network (fresh network namespace, unshare -n)"
if unshare -n true 2>/dev/null; then
	unshare -n bash -c measure
else
	NETWORK="network namespace unavailable: ran with the host network (both tools in --offline mode)"
	bash -c measure
fi

# --- report ------------------------------------------------------------------
awk -v s="$import_start" -v e="$import_end" -F': ' '
	/Maximum resident set size/ { rss = $2 } /User time/ { cpu += $2 } /System time/ { cpu += $2 }
	END { printf "setup portcullis-db-import %.4f %d %.2f\n", e - s, rss, cpu }' "$T/import.time" >>"$T/results.txt"
mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
echo
echo "portcullis $PORTCULLIS_REV; $OSV_SCANNER_VERSION; $(go version | cut -d' ' -f3); $(nproc) CPUs; $NETWORK"
echo "debian: debootstrap --variant=minbase bookworm ($MIRROR): $DEBIAN_PKGS packages, $ROOTFS_MB MB unpacked, archive $(mb "$T/debian.tar") (one gzip layer)"
echo "goapp:  one static Go binary ($(go version | cut -d' ' -f3), ${GOAPP_DEPS[*]}), archive $(mb "$T/goapp.tar")"
echo "OSV data: $(basename "$DEBIAN_OSV") records from $DEBIAN_OSV and $VULNDB_MODULE data/osv, as $T/osvdb/osv-scalibr/{Debian,Go}/all.zip for both tools"
echo "RUNS=$RUNS timed runs per tool and image after one warm-up each; medians; MB = 10^6 bytes; each run under /usr/bin/time -v:"
echo "  portcullis scan --data DATA --archive IMG.tar --format json      (DATA: portcullis db import --data DATA Debian/all.zip Go/all.zip, done once)"
echo "  osv-scanner scan image --archive IMG.tar --offline --local-db-path OSVDB --format json"
echo
"$T/bin/benchtool" table "$T/results.txt"
echo
echo "findings: (installed package, OSV id) pairs, osv-scanner run with --all-packages --all-vulns; osv-scanner names OS packages by source package"
echo "(os_package_name holds the installed one), so both sides are keyed by the installed package"
"$T/bin/benchtool" compare -label "debian (Debian:12)" -portcullis "$T/debian.portcullis.json" -osv "$T/debian.osv-scanner.json"
"$T/bin/benchtool" compare -label "goapp (Go)" -portcullis "$T/goapp.portcullis.json" -osv "$T/goapp.osv-scanner.json"
"$T/bin/benchtool" compare -label "debian-aged (synthetic: the same status file with glibc at 2.31-13 and util-linux at 2.36.1-7; not timed)" \
	-portcullis "$T/debian-aged.portcullis.json" -osv "$T/debian-aged.osv-scanner.json"
