"""``suitkit show``: a readable tree, CBOR diagnostic notation, or JSON."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from suitkit.format import cbor
from suitkit.format.codepoints import ManifestKey
from suitkit.format.commands import CommandSequence, PolicyCommand, RunSequence, TryEach
from suitkit.format.digest import Digest
from suitkit.format.envelope import Envelope
from suitkit.format.manifest import component_id_text
from suitkit.format.parameters import parameter_name, value_to_json


def envelope_json(envelope: Envelope) -> dict[str, Any]:
    auth = envelope.authentication
    blocks = []
    for b in auth.blocks:
        try:
            tagged = cbor.loads(b)
            tag = tagged.tag if isinstance(tagged, cbor.CBORTag) else None
        except Exception:
            tag = None
        blocks.append({"cose-tag": tag, "size": len(b)})
    return {
        "authentication": {"digest": auth.digest.to_json(), "blocks": blocks},
        "manifest": envelope.manifest.to_json(),
        "severable-members-present": [
            ManifestKey(k).spec_name if ManifestKey.name_of(k) else str(k)
            for k in sorted(envelope.severable)
        ],
        "severed": [
            ManifestKey(k).spec_name
            for k in envelope.manifest.severed()
            if k not in envelope.severable
        ],
        "integrated-payloads": {k: len(v) for k, v in envelope.integrated_payloads.items()},
    }


def render(envelope: Envelope, mode: str, *, comments: bool = True) -> None:
    if mode == "diag":
        print(cbor.diag(envelope.to_diag(), comments=comments))
        return
    if mode == "json":
        print(json.dumps(envelope_json(envelope), indent=2))
        return
    from rich.console import Console
    from rich.tree import Tree

    m = envelope.manifest
    root = Tree(
        f"[bold]SUIT envelope[/] (manifest version {m.version}, "
        f"sequence number {m.sequence_number})"
    )
    auth = envelope.authentication
    a = root.add(f"authentication: digest {auth.digest.algorithm_name} {auth.digest.value.hex()}")
    if not auth.blocks:
        a.add("[yellow]no signature or MAC (digest only)[/]")
    for b in auth.blocks:
        a.add(_block_label(b))
    if m.reference_uri:
        root.add(f"reference-uri: {m.reference_uri}")
    if m.manifest_component_id is not None:
        root.add(escape(f"manifest-component-id: {component_id_text(m.manifest_component_id)}"))
    comps = root.add("components")
    for i, c in enumerate(m.common.components):
        dep = m.common.dependencies.get(i)
        suffix = " (dependency)" if dep is not None else ""
        comps.add(escape(f"[{i}] {component_id_text(c)}{suffix}"))
    if m.common.shared_sequence is not None:
        _sequence(root.add("shared-sequence"), m.common.shared_sequence)
    for key in sorted(k for k in ManifestKey if m.sequence(k) is not None):
        member = m.sequence(key)
        label = key.spec_name
        if isinstance(member, Digest):
            present = key in envelope.severable
            node = root.add(
                f"{label}: [cyan]severed[/] ({member.algorithm_name} "
                f"{member.value.hex()[:16]}...)" + (" - present in the envelope" if present else "")
            )
            sev = envelope.severable.get(key)
            if isinstance(sev, CommandSequence):
                _sequence(node, sev)
        elif isinstance(member, CommandSequence):
            _sequence(root.add(label), member)
    text = m.text
    if isinstance(text, Digest):
        root.add(
            f"text: [cyan]severed[/] ({text.algorithm_name} {text.value.hex()[:16]}...)"
            + (" - present in the envelope" if ManifestKey.TEXT in envelope.severable else "")
        )
        text = envelope.severable.get(ManifestKey.TEXT)  # type: ignore[assignment]
    if text is not None and not isinstance(text, Digest):
        t = root.add("text")
        for lang, texts in text.to_json().items():
            lt = t.add(lang)
            for k, v in texts.items():
                if isinstance(v, dict):
                    ct = lt.add(escape(k))
                    for kk, vv in v.items():
                        ct.add(escape(f"{kk}: {_short(vv)}"))
                else:
                    lt.add(escape(f"{k}: {_short(v)}"))
    for name, payload in envelope.integrated_payloads.items():
        root.add(f"integrated payload {name!r}: {len(payload)} bytes")
    Console(highlight=False, soft_wrap=True).print(root)


def _short(text: str, n: int = 100) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[: n - 3] + "..."


def _block_label(block: bytes) -> str:
    names = {
        16: "COSE_Encrypt0",
        17: "COSE_Mac0",
        18: "COSE_Sign1",
        97: "COSE_Mac",
        98: "COSE_Sign",
    }
    try:
        value = cbor.loads(block)
    except Exception:
        return "[red]undecodable authentication block[/]"
    if not isinstance(value, cbor.CBORTag):
        return "[red]untagged authentication block[/]"
    label = names.get(value.tag, f"tag {value.tag}")
    try:
        protected = cbor.loads(value.value[0]) if value.value[0] else {}
        alg = protected.get(1)
        from suitkit.format.codepoints import CoseAlgorithm

        alg_name = str(alg)
        if isinstance(alg, int) and CoseAlgorithm.name_of(alg):
            alg_name = CoseAlgorithm(alg).spec_name
        kid = value.value[1].get(4) or protected.get(4)
        return f"{label} {alg_name}" + (f" kid {kid.hex()}" if isinstance(kid, bytes) else "")
    except Exception:
        return label


def _sequence(node: Any, seq: CommandSequence) -> None:
    for cmd in seq:
        if isinstance(cmd, TryEach):
            te = node.add(cmd.name + (" (nil-terminated)" if cmd.nil_terminated else ""))
            for j, s in enumerate(cmd.sequences):
                _sequence(te.add(f"alternative {j}"), s)
        elif isinstance(cmd, RunSequence):
            _sequence(node.add(cmd.name), cmd.sequence)
        elif isinstance(cmd, PolicyCommand):
            node.add(f"{cmd.name} (reporting policy {cmd.reporting_policy})")
        elif hasattr(cmd, "parameters"):
            p = node.add(cmd.name)
            for k, v in cmd.parameters.items():
                p.add(escape(f"{parameter_name(k)}: {_param_text(value_to_json(v))}"))
        else:
            node.add(escape(f"{cmd.name}: {cmd.argument_json()}"))


def _param_text(v: Any) -> str:
    if isinstance(v, dict) and "algorithm" in v:
        return f"{v['algorithm']} {v['value']}"
    return str(v)
