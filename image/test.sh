#!/usr/bin/env bash
# End-to-end test of a Relais image and its updates under QEMU (TCG: no KVM
# needed), where a gok binary is at hand:
#
#     make image-test GOK=/path/to/gok
#
# It builds a PC image for a throwaway site, boots it, sends a study, updates
# it with the current checkout (must be judged good), then with each bad
# relaisd — one that panics in init, one that exits 1 at once, one whose SCP
# never answers C-ECHO — and checks for each: make update fails with the
# guard's reason, the box is back on the good image within the guard's
# deadlines, the guard's stderr (gokrazy's status page) says "rolled back",
# and the study is still there. It prints one line per step with its timing,
# and a summary (image/README.md shows what to expect).
#
# Needs: GOK, qemu-system-x86_64, mkfs.ext4 (e2fsprogs >= 1.43 for -d),
# DCMTK's echoscu and storescu, curl, rsync. Nothing here is part of make test.
set -euo pipefail

: "${GOK:?set GOK to a gok binary (the module proxy does not serve gok here)}"
GO=${GO:-go}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/relais-e2e.XXXXXX)
HTTP=10080 DICOM=10104
qemu_pid=

cleanup() {
	if [ -n "$qemu_pid" ]; then kill "$qemu_pid" 2>/dev/null || true; fi
	echo "work folder (VM serial log, make outputs): $work"
}
trap cleanup EXIT

t0=$(date +%s)
step() { printf '%5ss  %s\n' "$(($(date +%s) - t0))" "$*"; }
fail() { step "FAIL: $*"; exit 1; }

# A throwaway site: the password made as the README says, gokrazy's API on a
# forwarded port (RELAIS_HTTP_PORT), the box at 127.0.0.1.
pw=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
site=$work/site.env
umask 077
cat >"$site" <<EOF
RELAIS_HOSTNAME=relais-e2e
RELAIS_HTTP_PASSWORD=$pw
RELAIS_UPDATE_HOST=127.0.0.1
RELAIS_HTTP_PORT=$HTTP
EOF
umask 022

# /perm starts with relaisd's configuration: port 104, and learning on, so
# that storescu's AE is taken as it comes (on a real box, the console).
mkdir -p "$work/perm/relais"
printf '{"port": 104, "learning": true}\n' >"$work/perm/relais/relais.json"
cat >"$work/mkfs" <<EOF
#!/bin/sh
exec /sbin/mkfs.ext4 -d "$work/perm" "\$@"
EOF
chmod +x "$work/mkfs"

mk() { make -C "$root" --no-print-directory BOX=pc SITE_ENV="$site" IMAGE_OUT="$work/build" GOK="$GOK" GO="$GO" "$@"; }

api() { curl -fsS --max-time "${2:-5}" -H "Accept: application/json" -u "gokrazy:$pw" "http://127.0.0.1:$HTTP$1"; }
sbom() { api / | sed -n 's/.*"SBOMHash":"\([0-9a-f]*\)".*/\1/p' | cut -c1-10; }
guard_stderr() { curl -s --max-time 3 -u "gokrazy:$pw" "http://127.0.0.1:$HTTP/log?path=/user/relais-guard&stream=stderr" || true; }
echo_ok() { echoscu -to 5 -aec RELAIS -aet CT1 127.0.0.1 "$DICOM" >/dev/null 2>&1; }
# The instances the box holds, from relaisd's log on gokrazy's status page
# (its metrics are served in the tunnel only, which this VM has none of):
# the count at its last start plus those received since.
stored() {
	api "/log?path=/user/relaisd&stream=stderr" 2 2>/dev/null | awk '
		/Relais started:/ { if (match($0, /holding [0-9]+ instance/)) { n = substr($0, RSTART + 8, RLENGTH - 17) + 0 } }
		/received [0-9]+ instance\(s\)/ { if (match($0, /received [0-9]+ instance/)) { n += substr($0, RSTART + 9, RLENGTH - 18) } }
		END { print n + 0 }'
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every second.
wait_for() {
	local max=$1 what=$2 start
	shift 2
	start=$(date +%s)
	until "$@"; do
		if [ $(($(date +%s) - start)) -ge "$max" ]; then fail "$what: not within ${max}s"; fi
		sleep 1
	done
}

step "building the image (make image)"
mk image IMAGE_BYTES=4000000000 MKFS_EXT4="$work/mkfs" >"$work/image.out" 2>&1 || { cat "$work/image.out"; fail "make image"; }
if grep -q -- "$pw" "$work/image.out" "$work"/build/*.img.log; then fail "the password is printed by make image or in its log"; fi
cp "$work/build/relais-pc.img" "$work/vm.img"

step "booting it under QEMU (TCG, BIOS)"
qemu-system-x86_64 -m 1024 -smp 2 -drive file="$work/vm.img",format=raw -display none \
	-serial file:"$work/serial.log" \
	-netdev user,id=n,restrict=on,hostfwd=tcp:127.0.0.1:$DICOM-:104,hostfwd=tcp:127.0.0.1:$HTTP-:$HTTP \
	-device virtio-net-pci,netdev=n &
qemu_pid=$!
boot=$(date +%s)
wait_for 300 "relaisd answering C-ECHO after the first boot" echo_ok
step "relaisd answers C-ECHO, $(($(date +%s) - boot))s after QEMU started"
good=$(sbom)
[ -n "$good" ] || fail "gokrazy did not tell the running image (SBOMHash)"

step "sending a study (5 CT slices)"
"$GO" -C "$root" run ./cmd/relais gen -ct 5 -seed 14 -out "$work/study" >/dev/null
TCP_NODELAY=1 storescu -aec RELAIS -aet CT1 127.0.0.1 "$DICOM" "$work"/study/*.dcm || fail "storescu"
wait_for 30 "5 instances stored" test "$(stored)" = 5
step "5 instances stored; image $good, judged good as installed"

# update NAME CHECKOUT WANT_EXIT: make update from CHECKOUT, which must exit
# WANT_EXIT (make fails with 2); then the box must run the good image and
# answer C-ECHO.
summary=()
update() {
	local name=$1 checkout=$2 want=$3 start code=0 back
	start=$(date +%s)
	step "update: $name"
	mk update CHECKOUT="$checkout" >"$work/update-$name.out" 2>&1 || code=$?
	sed 's/^/        | /' "$work/update-$name.out" | tail -n 8
	if grep -q -- "$pw" "$work/update-$name.out" "$work"/build/update-*.log; then fail "$name: the password is printed"; fi
	[ "$code" = "$want" ] || fail "$name: make update exited $code, want $want"
	wait_for 600 "$name: C-ECHO after the update" echo_ok
	back=$(($(date +%s) - start))
	if [ "$want" = 0 ]; then
		good=$(sbom)
		grep -q "is good: all health checks passed" "$work/update-$name.out" || fail "$name: no good verdict"
	else
		[ -n "$good" ] && [ "$(sbom)" = "$good" ] || fail "$name: the box runs $(sbom), not the good image $good"
		grep -q "rolled back: $4" "$work/update-$name.out" || fail "$name: the verdict does not say \"$4\""
		guard_stderr | grep -q "rolled back" || fail "$name: the guard's stderr (status page) does not say rolled back"
	fi
	[ "$(stored)" = 5 ] || fail "$name: $(stored) instances stored, want 5"
	step "$name: make update exit $code, DICOM back ${back}s after make update began; 5 instances still stored"
	summary+=("$(printf '%-12s exit %s  %4ss  %s' "$name" "$code" "$back" "$(grep -m1 -o 'update to [0-9a-f]* [a-z -]*: .*' "$work/update-$name.out" | cut -c1-100)")")
}

# A bad variant of the checkout: a copy with one change to relaisd.
variant() {
	local dir=$work/src-$1
	rsync -a --exclude .git --exclude image/build --exclude relais-data "$root/" "$dir/"
	echo "$dir"
}

update good "$root" 0

d=$(variant panic)
printf 'package main\n\nfunc init() { panic("e2e: relaisd panics in init") }\n' >"$d/cmd/relaisd/zz_e2e.go"
update init-panic "$d" 2 "relaisd crashed"

d=$(variant exit1)
printf 'package main\n\nimport "os"\n\nfunc init() { println("e2e: relaisd exits at once"); os.Exit(1) }\n' >"$d/cmd/relaisd/zz_e2e.go"
update exit-1 "$d" 2 "relaisd crashed"

d=$(variant noecho)
# The SCP accepts associations and never answers a C-ECHO.
sed -i 's|Handlers: dimse.Handlers{|Handlers: dimse.Handlers{\n\t\t\tEcho: func(ctx context.Context, _ *dimse.Association) dimse.Status { <-ctx.Done(); return dimse.StatusSuccess },|' "$d/appliance/appliance.go"
grep -q 'e2e\|<-ctx.Done(); return dimse.StatusSuccess' "$d/appliance/appliance.go" || fail "no-echo variant: the patch did not apply"
update no-echo "$d" 2 "health checks failed"

step "all passed"
printf '  %s\n' "${summary[@]}"
