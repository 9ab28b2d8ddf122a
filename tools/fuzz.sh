#!/usr/bin/env bash
# The fuzzing campaign: every cargo-fuzz target for a bounded time.
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 45 s, all)
#
# Each target first replays its saved regressions (fuzz/regressions/T/,
# inputs that once crashed it), then fuzzes from the committed seeds
# (fuzz/seeds/T/) plus the recorded packets in tests/fixtures. A crash
# fails the run; the input is kept under fuzz/artifacts/T/ and printed in
# hex so it can be added to fuzz/regressions/T/ as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-45}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi

# Seeds that live with the tests: recorded firmware packets, bad TFTP input.
seed_extra() {
    case "$1" in
        dhcp_packet|proxy_answer) find tests/fixtures/dhcp -name '*.bin' 2>/dev/null ;;
        tftp_packet) find tests/fixtures/tftp-bad -type f 2>/dev/null ;;
        *) true ;;
    esac
}

failed=()
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus" "fuzz/regressions/$t" "fuzz/seeds/$t"
    while read -r f; do
        [ -n "$f" ] && cp -n "$f" "$corpus/" 2>/dev/null || true
    done < <(seed_extra "$t")
    # proxy_answer's first byte picks the port: give the packets both.
    if [ "$t" = proxy_answer ]; then
        for f in tests/fixtures/dhcp/*.bin; do
            [ -f "$f" ] || continue
            { printf '\x00'; cat "$f"; } > "$corpus/67-$(basename "$f")"
            { printf '\x01'; cat "$f"; } > "$corpus/4011-$(basename "$f")"
        done
    fi
    echo "== $t: regressions"
    if ls "fuzz/regressions/$t"/* >/dev/null 2>&1; then
        cargo +nightly fuzz run --fuzz-dir fuzz "$t" "fuzz/regressions/$t"/* -- -runs=0 || { failed+=("$t (regression)"); continue; }
    fi
    echo "== $t: fuzzing ${seconds}s"
    if ! cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$corpus" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$t")
        for crash in fuzz/artifacts/"$t"/*; do
            [ -f "$crash" ] || continue
            echo "crash input $crash (hex):"
            od -An -tx1 -v "$crash" | head -40
        done
    fi
done

echo "fuzz: $(( ${#targets[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
