"""The builder reproduces the spec's Appendix B examples byte for byte (manifest §7, App. B)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suitkit.author.builder import build_from_description, load_description
from suitkit.author.signing import sign_envelope
from suitkit.author.values import DescriptionError, class_id_from_info, vendor_id_from_domain
from suitkit.cose.keys import CoseKey
from suitkit.format.authentication import authenticate
from suitkit.format.codepoints import ManifestKey
from suitkit.format.envelope import Envelope
from tests.conftest import EXAMPLE_KEY_PRIVATE, EXAMPLE_KEY_PUBLIC, VECTORS

DESCRIPTIONS = Path(__file__).parent.parent / "descriptions"


def _build(name: str) -> Envelope:
    path = DESCRIPTIONS / name
    return build_from_description(load_description(path), path.parent)


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5])
def test_high_level_description_reproduces_digest_only_example(n: int) -> None:
    assert (
        _build(f"example{n}.yaml").encode()
        == (VECTORS / f"example{n}.digest-only.suit").read_bytes()
    )


@pytest.mark.parametrize("n", [3, 4])
def test_explicit_description_reproduces_digest_only_example(n: int) -> None:
    want = (VECTORS / f"example{n}.digest-only.suit").read_bytes()
    assert _build(f"example{n}.explicit.yaml").encode() == want


def test_example2_severed_form_and_full_form_match_the_vectors() -> None:
    env = _build("example2.yaml")
    assert env.sever().encode() == (VECTORS / "example2.severed.digest-only.suit").read_bytes()
    full = Envelope.decode((VECTORS / "example2.suit").read_bytes())
    assert env.manifest.encoded == full.manifest.encoded
    for key in (ManifestKey.INSTALL, ManifestKey.TEXT):
        assert env.severable[key].encoded == full.severable[key].encoded


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5])
def test_signing_a_built_example_with_the_example_key_verifies(n: int) -> None:
    signed = sign_envelope(_build(f"example{n}.yaml"), [CoseKey.load(EXAMPLE_KEY_PRIVATE)])
    result = authenticate(signed.encode(), [CoseKey.load(EXAMPLE_KEY_PUBLIC)])
    assert result.manifest.sequence_number == n


def test_payload_file_gives_digest_and_size(tmp_path: Path) -> None:
    (tmp_path / "fw.bin").write_bytes(b"firmware" * 1000)
    desc = {"sequence-number": 1, "components": [{"payload": "fw.bin", "uri": "file:fw.bin"}]}
    env = build_from_description(desc, tmp_path)
    params = env.manifest.common.shared_sequence[0].parameters  # type: ignore[index,union-attr]
    assert params.image_size == 8000
    import hashlib

    assert params.image_digest.value == hashlib.sha256(b"firmware" * 1000).digest()


def test_integrated_payload_goes_into_the_envelope(tmp_path: Path) -> None:
    (tmp_path / "fw.bin").write_bytes(b"abc")
    desc = {"sequence-number": 1, "components": [{"payload": "fw.bin", "integrated": True}]}
    env = build_from_description(desc, tmp_path)
    assert env.integrated_payloads == {"#fw.bin": b"abc"}
    install = env.manifest.install
    assert install is not None and install[0].parameters.uri == "#fw.bin"  # type: ignore[union-attr]


def test_uuid5_identifiers_follow_section_8_4_8_1() -> None:
    # The spec's example vendor id is UUID5(DNS, "arm.com"), the vendor-domain of Example 2.
    vendor = vendor_id_from_domain("arm.com")
    assert str(vendor) == "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
    import uuid

    assert class_id_from_info(vendor, "model-x") == uuid.uuid5(vendor, "model-x")


@pytest.mark.parametrize(
    ("desc", "fragment"),
    [
        ({"components": [{}]}, "sequence-number"),
        ({"sequence-number": 1}, "components"),
        ({"sequence-number": 1, "components": [{"class-info": "x"}]}, "vendor"),
        ({"sequence-number": 1, "components": [{"digest": "md5:00"}]}, "digest algorithm"),
        ({"sequence-number": 1, "components": [{"payload": "missing.bin"}]}, "cannot read"),
        (
            {"sequence-number": 1, "components": [["h'00'"]], "validate": [{"no-such": 1}]},
            "unknown command",
        ),
        (
            {
                "sequence-number": 1,
                "components": [["h'00'"]],
                "validate": [{"override-parameters": {"vendor-id": "nope"}}],
            },
            "UUID",
        ),
        ({"sequence-number": -1, "components": [{}]}, "unsigned"),
    ],
)
def test_bad_descriptions_name_the_field(desc: dict, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(DescriptionError, match=fragment):
        build_from_description(desc, tmp_path)
