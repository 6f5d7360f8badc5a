#!/usr/bin/env bash
# The suitkit end-to-end demo (`make demo`): keys, a manifest for a payload, signing, verification,
# inspection, severing; then the attacks a verifier must refuse. Everything stays in demo/out/.
set -euo pipefail
cd "$(dirname "$0")"
OUT=out
rm -rf "$OUT" && mkdir -p "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Keys: an ESP256 signing key (P-256) and its public half"
suitkit keygen --alg esp256 -o "$OUT/author.pem" --kid author-1
suitkit pubkey "$OUT/author.pem" -o "$OUT/author.pub.pem"

step "2. A firmware payload and a description of the update"
head -c 65536 /dev/urandom > "$OUT/firmware.bin"
cat > "$OUT/update.yaml" <<'YAML'
# One component, fetched over HTTP, checked, then invoked (manifest §7 templates).
sequence-number: 1
severable: [install, text]
text:
  en-US:
    manifest-description: suitkit demo update
components:
  - id: ["h'00'"]
    vendor-domain: example.com        # vendor id = UUID5(DNS, "example.com")   (§8.4.8.1)
    class-info: demo-board-rev-a      # class id  = UUID5(vendor id, class info)
    payload: firmware.bin             # digest and size computed from the file
    uri: http://127.0.0.1:8080/firmware.bin
    invoke: true
    text:
      component-description: demo application image
YAML
cat "$OUT/update.yaml"

step "3. Build and sign the envelope"
suitkit create "$OUT/update.yaml" -o "$OUT/update.suit" --key "$OUT/author.pem"

step "4. Verify it with the author's public key"
suitkit verify "$OUT/update.suit" --key "$OUT/author.pub.pem"

step "5. Show it: a readable tree, then CBOR diagnostic notation"
suitkit show "$OUT/update.suit"
suitkit show "$OUT/update.suit" --diag | head -40

step "6. Sever the install and text members (the signature stays valid)"
suitkit sever "$OUT/update.suit" -o "$OUT/update.severed.suit" --save "$OUT/severed"
suitkit verify "$OUT/update.severed.suit" --key "$OUT/author.pub.pem"

step "7. Attacks a verifier must refuse"
python3 - "$OUT/update.suit" "$OUT/tampered.suit" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[len(data) // 2] ^= 0x01          # one flipped bit in the signed manifest
open(sys.argv[2], "wb").write(bytes(data))
PY
if suitkit verify "$OUT/tampered.suit" --key "$OUT/author.pub.pem"; then
  echo "tampered manifest accepted: FAIL"; exit 1
else
  echo "-> tampered manifest rejected (exit $?)"
fi
suitkit keygen --alg esp256 -o "$OUT/mallory.pem" >/dev/null
suitkit create "$OUT/update.yaml" -o "$OUT/forged.suit" --key "$OUT/mallory.pem" >/dev/null
if suitkit verify "$OUT/forged.suit" --key "$OUT/author.pub.pem"; then
  echo "forged manifest accepted: FAIL"; exit 1
else
  echo "-> manifest signed by an unknown key rejected"
fi
suitkit create "$OUT/update.yaml" -o "$OUT/unsigned.suit" >/dev/null
if suitkit verify "$OUT/unsigned.suit" --key "$OUT/author.pub.pem"; then
  echo "unsigned manifest accepted: FAIL"; exit 1
else
  echo "-> unsigned (digest-only) manifest rejected"
fi

if [ -f device-demo.sh ]; then
  step "8. A simulated device"
  bash device-demo.sh "$OUT"
fi

if [ -f fleet-demo.sh ]; then
  step "9. The update service and a fleet: server, 50 devices, a staged campaign over HTTP and CoAP with faults"
  bash fleet-demo.sh "$OUT"
fi

printf '\n\033[1mdemo complete\033[0m: files in demo/%s\n' "$OUT"
