"""The typed model against every spec vector: decode, re-encode byte for byte, diag."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest

from suitkit.errors import DecodeError, SuitError
from suitkit.format import cbor
from suitkit.format.codepoints import Command, ManifestKey, Parameter
from suitkit.format.commands import (
    CommandSequence,
    ConditionComponentSlot,
    ConditionImageMatch,
    OverrideParameters,
    SetComponentIndex,
    TryEach,
)
from suitkit.format.digest import Digest
from suitkit.format.envelope import Envelope
from tests.conftest import CBOR_VECTORS, ENVELOPES, VECTORS

# The generated diag of these two decodes ciphertext bytes that happen to be valid CBOR; ours
# shows bytes as bytes where the schema says so.
_HEURISTIC_DIAG = {"suit-manifest-es-ecdh-content", "suit-manifest-es-ecdh-dependency"}


def _forget_encodings(obj: Any, seen: set[int] | None = None) -> None:
    """Drop every kept encoding in a decoded model, so that encoding must start from scratch."""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "_encoded"):
            object.__setattr__(obj, "_encoded", None)
        for f in dataclasses.fields(obj):
            _forget_encodings(getattr(obj, f.name), seen)
    elif isinstance(obj, dict):
        for v in obj.values():
            _forget_encodings(v, seen)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _forget_encodings(v, seen)
    elif hasattr(obj, "values") and callable(obj.values):
        for v in obj.values():
            _forget_encodings(v, seen)


def test_there_are_26_cbor_vectors() -> None:
    assert len(CBOR_VECTORS) == 26
    assert len(ENVELOPES) == 21


@pytest.mark.parametrize("path", ENVELOPES, ids=lambda p: p.name)
def test_every_envelope_vector_reencodes_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    envelope = Envelope.decode(data)
    assert envelope.encode() == data


@pytest.mark.parametrize("path", ENVELOPES, ids=lambda p: p.name)
def test_every_envelope_vector_reencodes_from_the_typed_model_alone(path: Path) -> None:
    """Encoding from the typed fields (no kept bytes anywhere) reproduces the vector: the
    encoder, not the cache, is right."""
    data = path.read_bytes()
    envelope = Envelope.decode(data)
    _forget_encodings(envelope)
    assert cbor.dumps(envelope.to_cbor()) == data


@pytest.mark.parametrize("path", CBOR_VECTORS, ids=lambda p: p.name)
def test_every_cbor_vector_decodes_strictly_and_reencodes(path: Path) -> None:
    data = path.read_bytes()
    assert cbor.dumps(cbor.loads(data)) == data


@pytest.mark.parametrize(
    "path",
    [p for p in ENVELOPES if p.with_suffix(".gen.diag").exists() and p.stem not in _HEURISTIC_DIAG],
    ids=lambda p: p.name,
)
def test_diagnostic_notation_matches_the_generated_diag(path: Path) -> None:
    envelope = Envelope.decode(path.read_bytes())
    assert (
        cbor.diag(envelope.to_diag(), comments=False)
        == path.with_suffix(".gen.diag").read_text().strip()
    )


def test_example0_decodes_to_typed_commands_and_parameters() -> None:
    env = Envelope.decode((VECTORS / "example0.suit").read_bytes())
    m = env.manifest
    assert m.version == 1 and m.sequence_number == 0
    assert m.common.components == ((b"\x00",),)
    shared = m.common.shared_sequence
    assert shared is not None
    override = shared[0]
    assert isinstance(override, OverrideParameters)
    p = override.parameters
    assert p.vendor_identifier == uuid.UUID("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe")
    assert p.class_identifier == uuid.UUID("1492af14-2569-5e48-bf42-9b2d51f2ab45")
    assert p.image_size == 34768
    assert isinstance(p.image_digest, Digest) and p.image_digest.algorithm_name == "sha256"
    assert m.validate == CommandSequence([ConditionImageMatch(15)])
    assert m.invoke is not None and m.invoke[0].code == Command.INVOKE


def test_example3_try_each_holds_nested_sequences() -> None:
    m = Envelope.decode((VECTORS / "example3.suit").read_bytes()).manifest
    assert m.common.shared_sequence is not None
    try_each = m.common.shared_sequence[1]
    assert isinstance(try_each, TryEach) and len(try_each.sequences) == 2
    assert not try_each.nil_terminated
    first = try_each.sequences[0]
    assert first[0] == OverrideParameters(first[0].parameters)
    assert first[0].parameters[Parameter.COMPONENT_SLOT] == 0
    assert first[1] == ConditionComponentSlot(5)


def test_example4_sets_component_index_in_every_sequence() -> None:
    m = Envelope.decode((VECTORS / "example4.suit").read_bytes()).manifest
    for key in (
        ManifestKey.VALIDATE,
        ManifestKey.LOAD,
        ManifestKey.INVOKE,
        ManifestKey.INSTALL,
        ManifestKey.PAYLOAD_FETCH,
    ):
        seq = m.sequence(key)
        assert isinstance(seq, CommandSequence)
        assert isinstance(seq[0], SetComponentIndex)


def test_example2_severed_members_are_digests_and_present_in_the_envelope() -> None:
    env = Envelope.decode((VECTORS / "example2.suit").read_bytes())
    assert env.manifest.severed() == [ManifestKey.INSTALL, ManifestKey.TEXT]
    assert set(env.severable) == {ManifestKey.INSTALL, ManifestKey.TEXT}
    text = env.severable[ManifestKey.TEXT]
    assert text.languages["en-US"].components[(b"\x00",)][3] == "arm.com"  # type: ignore[union-attr]


def test_severing_example2_gives_the_severed_vector() -> None:
    env = Envelope.decode((VECTORS / "example2.suit").read_bytes())
    assert env.sever().encode() == (VECTORS / "example2.severed.suit").read_bytes()


def test_integrated_dependency_is_kept_as_a_payload() -> None:
    env = Envelope.decode((VECTORS / "trust-domains" / "example2_integrated.suit").read_bytes())
    inner = Envelope.decode(env.integrated_payloads["#dependent.suit"])
    assert inner.manifest.manifest_component_id == (b"dependent.suit",)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda m: m.pop(ManifestKey.MANIFEST_SEQUENCE_NUMBER), "sequence-number is missing"),
        (lambda m: m.__setitem__(ManifestKey.MANIFEST_SEQUENCE_NUMBER, -1), "must be a uint"),
        (lambda m: m.__setitem__(ManifestKey.COMMON, [1]), "bstr-wrapped SUIT_Common"),
        (lambda m: m.__setitem__(ManifestKey.VALIDATE, cbor.dumps([3])), "pairs"),
        (lambda m: m.__setitem__(ManifestKey.VALIDATE, cbor.dumps([3, -1])), "reporting policy"),
        (
            lambda m: m.__setitem__(ManifestKey.VALIDATE, cbor.dumps([12, "x"])),
            "set-component-index",
        ),
        (
            lambda m: m.__setitem__(ManifestKey.VALIDATE, cbor.dumps([15, [cbor.dumps([14, 0])]])),
            "at least two",
        ),
        (lambda m: m.__setitem__(ManifestKey.VALIDATE, cbor.dumps([20, {3: b"\x00"}])), "digest"),
        (lambda m: m.__setitem__(ManifestKey.VALIDATE, cbor.dumps([20, {1: b"short"}])), "UUID"),
    ],
)
def test_malformed_manifests_name_what_is_wrong(mutate: Any, fragment: str) -> None:
    env = Envelope.decode((VECTORS / "example0.suit").read_bytes())
    m = cbor.loads(env.manifest.encoded)
    mutate(m)
    from suitkit.format.manifest import Manifest

    with pytest.raises(DecodeError, match=fragment) as info:
        Manifest.decode(cbor.dumps(m))
    assert info.value.path and info.value.path.startswith("manifest")


def test_fetch_in_the_shared_sequence_is_refused() -> None:
    with pytest.raises(DecodeError, match="not allowed in the shared sequence"):
        CommandSequence.decode(cbor.dumps([21, 2]), shared=True)


def test_errors_are_suit_errors_with_a_reason() -> None:
    with pytest.raises(SuitError) as info:
        Envelope.decode(b"\xd8\x6b\xa0")
    assert info.value.reason.spec_name == "cbor-parse"
