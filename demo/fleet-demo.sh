#!/usr/bin/env bash
# The fleet demo: an update service on loopback (HTTP and CoAP), 50 simulated devices, a staged
# campaign with faults injected (lost requests, power cuts during installs, a corrupting link,
# slow links), the outcome, then one device directory driven by `suitkit agent run`.
# Needs only `suitkit` (and the python of its environment) on PATH; starts everything it uses
# in the background on free ports and stops it on exit (FLEET_DEMO_KEEP=1: keeps the server
# up for the dashboard until Ctrl-C). Files go to <OUT>/fleet, OUT being the first argument
# (relative to demo/; default out), as `bash demo/fleet-demo.sh` or from demo.sh as
# `bash fleet-demo.sh "$OUT"`.
set -euo pipefail
cd "$(dirname "$0")"
OUT="${1:-out}/fleet"
rm -rf "$OUT" && mkdir -p "$OUT"
PY=$(command -v python || command -v python3)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

# `suitkit agent` / `suitkit fleet`, or the stand-alone module until they are mounted
if suitkit fleet --help >/dev/null 2>&1; then
  AGENT=(suitkit)
else
  AGENT=("$PY" -m suitkit.cli.agent)
fi

free_port() {  # $1: tcp or udp
  "$PY" - "$1" <<'PY'
import socket, sys
kind = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
with socket.socket(socket.AF_INET, kind) as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
PY
}

step "1. The author's key and a signed release (64 KiB firmware, severed install and text)"
suitkit keygen --alg esp256 -o "$OUT/author.pem" --kid fleet-author
suitkit pubkey "$OUT/author.pem" -o "$OUT/author.pub.pem"
head -c 65536 /dev/urandom > "$OUT/firmware.bin"
cat > "$OUT/update.yaml" <<'YAML'
sequence-number: 2                   # the devices leave the factory with sequence number 0
severable: [install, text]
text:
  en-US: {manifest-description: fleet demo release 2}
components:
  - id: ["h'00'"]
    vendor-domain: example.com
    class-info: fleet-board-rev-a
    payload: firmware.bin
    uri: https://updates.example.com/fleet/firmware.bin
    invoke: true
YAML
suitkit create "$OUT/update.yaml" -o "$OUT/update.suit" --key "$OUT/author.pem"
suitkit sever "$OUT/update.suit" -o "$OUT/update.severed.suit" --save "$OUT/severed"
MEMBERS=()
for m in "$OUT"/severed/*.cbor; do MEMBERS+=(--severed "$m"); done
suitkit verify "$OUT/update.severed.suit" --key "$OUT/author.pub.pem" "${MEMBERS[@]}"
read -r VENDOR CLASS < <("$PY" -c '
import uuid
v = uuid.uuid5(uuid.NAMESPACE_DNS, "example.com")
print(v, uuid.uuid5(v, "fleet-board-rev-a"))')
echo "vendor-id $VENDOR  class-id $CLASS"

step "2. The update service on loopback: HTTP (SQLite) and CoAP, in one process"
PORT=$(free_port tcp)
CPORT=$(free_port udp)
URL="http://127.0.0.1:$PORT"
COAP="coap://127.0.0.1:$CPORT"
export SUITKIT_TICK_INTERVAL=0.5 SUITKIT_ACCESS_LOG=false
suitkit db upgrade --data "$OUT/server" >/dev/null
TOKEN=$(suitkit admin token create --role admin --name fleet-demo --data "$OUT/server")
suitkit serve --data "$OUT/server" --host 127.0.0.1 --port "$PORT" --coap-port "$CPORT" \
  --trust "$OUT/author.pub.pem" >"$OUT/server.log" 2>&1 &
PIDS+=($!)
"$PY" - "$URL" <<'PY'
import sys, time, httpx
url = sys.argv[1]
deadline = time.monotonic() + 30
while True:  # HTTP answers once the server has started, CoAP included
    try:
        if httpx.get(url + "/healthz", timeout=1).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the server did not start (see server.log in the output folder)")
    time.sleep(0.1)
PY
echo "HTTP $URL, CoAP $COAP"

step "3. Register 50 devices (identities and report keys made here, tokens from the server)"
"${AGENT[@]}" fleet register --server "$URL" --devices 50 --token "$TOKEN" \
  --vendor-id "$VENDOR" --class-id "$CLASS" --group demo --devices-file "$OUT/fleet.json"

step "4. Upload the release and start a staged campaign: waves of 10%, 50%, 100%"
read -r RELEASE CAMPAIGN < <("$PY" - "$URL" "$TOKEN" "$OUT" <<'PY'
import json, pathlib, sys, httpx
url, token, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
files = [("envelope", ("update.suit", (out / "update.severed.suit").read_bytes())),
         ("payload", ("firmware.bin", (out / "firmware.bin").read_bytes()))]
files += [("severed", (p.name, p.read_bytes())) for p in sorted((out / "severed").iterdir())]
r = c.post("/api/v1/releases", files=files, data={"name": "fleet demo release 2"})
if r.status_code != 201:
    sys.exit(f"release upload refused: {r.status_code} {r.text}")
rel = r.json()["id"]
r = c.post("/api/v1/campaigns", json={
    "name": "fleet demo", "release_id": rel, "target": {"group": "demo"},
    "waves": [10, 50, 100], "failure_threshold": 0.3, "min_reports": 3})
if r.status_code != 201:
    sys.exit(f"campaign refused: {r.status_code} {r.text}")
print(rel, r.json()["id"])
PY
)
echo "release $RELEASE, campaign $CAMPAIGN"

step "5. 50 devices, half over HTTP, half over CoAP, with faults"
echo "faults: 5% of requests lost, 6% of devices lose power while installing,"
echo "        4% behind a link that corrupts payloads, 10% on a slow link"
"${AGENT[@]}" fleet simulate --server "$URL" --coap "$COAP" --transport http,coap \
  --devices 50 --devices-file "$OUT/fleet.json" --token "$TOKEN" --campaign "$CAMPAIGN" \
  --trust "$OUT/author.pub.pem" --faults drop=0.05,powerloss=0.06,corrupt=0.04,slow=0.1 \
  --flash-size 128K --interval 0.3 --seed 2024 --workdir "$OUT/sim" \
  --json "$OUT/fleet-outcome.json"

step "6. The campaign as the server sees it"
"$PY" - "$URL" "$TOKEN" "$CAMPAIGN" <<'PY'
import sys, httpx
url, token, cid = sys.argv[1:4]
c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
s = c.get(f"/api/v1/campaigns/{cid}").json()
print(f"campaign {cid} '{s['name']}': {s['state']}"
      + (f" ({s['pause_reason']})" if s.get("pause_reason") else ""))
for w in s["per_wave"]:
    print(f"  wave {w['wave'] + 1} ({w['percent']:g}%): " +
          ", ".join(f"{k} {v}" for k, v in w["counts"].items() if v))
if s["failure_reasons"]:
    print("  failure reasons: " + ", ".join(f"{k} {v}" for k, v in s["failure_reasons"].items()))
link = c.post("/api/v1/login-codes").json()["url"]
print(f"dashboard: {url}/ui/  (one-time sign-in link, valid 5 minutes: {link})")
PY

step "7. One device directory and its agent: enroll, run once, status"
DEV="$OUT/device"
DEVICE_ID=$("$PY" -c 'import uuid; print(uuid.uuid4())')
suitkit device init "$DEV" --vendor-id "$VENDOR" --class-id "$CLASS" --device-id "$DEVICE_ID" \
  --trust "$OUT/author.pub.pem" --flash-size 131072 >/dev/null
"${AGENT[@]}" agent enroll "$DEV" --server "$URL" --admin-token "$TOKEN"
"$PY" - "$URL" "$TOKEN" "$RELEASE" "$DEVICE_ID" <<'PY'
import sys, httpx
url, token, rel, dev = sys.argv[1:5]
c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
r = c.post("/api/v1/campaigns", json={"name": "one device", "release_id": int(rel),
                                       "target": {"devices": [dev]}})
assert r.status_code == 201, r.text
PY
"${AGENT[@]}" agent run "$DEV" --once
"${AGENT[@]}" agent status "$DEV"

if [ "${FLEET_DEMO_KEEP:-0}" = 1 ]; then
  echo "the server stays up at $URL/ui/ (token $TOKEN): Ctrl-C stops it"
  wait "${PIDS[0]}" || true
fi
printf '\n\033[1mfleet demo complete\033[0m: files in demo/%s (the servers are stopped now)\n' "$OUT"
