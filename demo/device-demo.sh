#!/usr/bin/env bash
# Device part of `make demo` (issue #3): a simulated device takes the update, boots it, reports;
# then a tampered payload and a rolled-back manifest are rejected with their reasons.
set -euo pipefail
OUT="$1"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ids=$(python3 -c "import uuid; v = uuid.uuid5(uuid.NAMESPACE_DNS, 'example.com'); print(v, uuid.uuid5(v, 'demo-board-rev-a'))")
VENDOR=${ids% *}; CLASS=${ids#* }

step "8a. A simulated device that trusts the author's key"
suitkit device init "$OUT/device" --vendor-id "$VENDOR" --class-id "$CLASS" --trust "$OUT/author.pub.pem"

step "8b. Update it (the payload URI is served from a local file), then boot it"
suitkit device update "$OUT/device" "$OUT/update.suit" --payload "http://127.0.0.1:8080/firmware.bin=$OUT/firmware.bin"
suitkit device boot "$OUT/device"
suitkit device status "$OUT/device"

step "8c. The device's signed SUIT report of the update"
report=$(ls "$OUT"/device/reports/*update* | head -1)
suitkit report show "$report" --key "$OUT/device/device-key.pub.pem"

step "8d. A tampered payload is rejected (image-match fails, nothing bootable changes)"
cp "$OUT/firmware.bin" "$OUT/tampered.bin"
printf 'X' | dd of="$OUT/tampered.bin" bs=1 seek=100 conv=notrunc 2>/dev/null
if suitkit device update "$OUT/device" "$OUT/update.suit" --payload "http://127.0.0.1:8080/firmware.bin=$OUT/tampered.bin" > "$OUT/tampered.log" 2>&1; then
  echo "tampered payload accepted: FAIL"; exit 1
fi
tail -2 "$OUT/tampered.log"
suitkit device boot "$OUT/device" | tail -2

step "8e. A rolled-back manifest (lower sequence number) is rejected"
sed 's/^sequence-number: 1$/sequence-number: 0/' "$OUT/update.yaml" > "$OUT/old.yaml"
cp "$OUT/firmware.bin" "$OUT/firmware-old.bin"
suitkit create "$OUT/old.yaml" -o "$OUT/old.suit" --key "$OUT/author.pem" > /dev/null
if suitkit device update "$OUT/device" "$OUT/old.suit" --payload "http://127.0.0.1:8080/firmware.bin=$OUT/firmware.bin" > "$OUT/rollback.log" 2>&1; then
  echo "rollback accepted: FAIL"; exit 1
fi
tail -1 "$OUT/rollback.log"
