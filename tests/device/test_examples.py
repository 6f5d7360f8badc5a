"""Appendix B examples 0-5 (manifest §B) on a device with the examples' vendor and class ids.

The examples' payloads are not public (their digests are placeholders), so each example is run
as given and the exact trace and the failing record are asserted; a builder-made twin of each
example, whose payloads exist, then runs to full success.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from suitkit.author.builder import build_from_description
from suitkit.device.events import Procedure, RunResult
from suitkit.device.memory import MemoryComponent
from suitkit.device.processor import Processor
from suitkit.errors import ConditionFailedError, SeveringUnsupportedError
from suitkit.format.codepoints import ManifestKey, ReportReason

from .conftest import C0, C1, C2, CLASS, VENDOR, example, memory_device

FAKE = {
    "http://example.com/file.bin": b"x" * 34768,
    "http://example.com/file1.bin": b"y" * 34768,
    "http://example.com/file2.bin": b"z" * 76834,
    "http://example.com/very/long/path/to/file/file.bin": b"w" * 34768,
}


def trace(result: RunResult) -> list[str]:
    out = []
    for e in result.events:
        ok = {None: "...", True: "ok", False: "soft-fail" if e.soft else "FAIL"}[e.ok]
        comp = "-" if e.component_index is None else str(e.component_index)
        out.append(f"{e.section_name}+{e.offset} #{comp} {e.name} {ok}")
    return out


SHARED_1 = [
    "shared-sequence+1 #0 directive-override-parameters ok",
    "shared-sequence+82 #0 condition-vendor-identifier ok",
    "shared-sequence+84 #0 condition-class-identifier ok",
]
SHARED_MULTI = [
    "shared-sequence+1 #- directive-set-component-index ok",
    "shared-sequence+3 #0 directive-override-parameters ok",
    "shared-sequence+84 #0 condition-vendor-identifier ok",
    "shared-sequence+86 #0 condition-class-identifier ok",
]
SHARED_AB = [
    "shared-sequence+1 #0 directive-override-parameters ok",
    "shared-sequence+39 #0 directive-try-each ...",
    "shared-sequence+44 #0 directive-override-parameters ok",
    "shared-sequence+48 #0 condition-component-slot soft-fail",
    "shared-sequence+98 #0 directive-override-parameters ok",
    "shared-sequence+102 #0 condition-component-slot ok",
    "shared-sequence+104 #0 directive-override-parameters ok",
    "shared-sequence+39 #0 directive-try-each ok",
    "shared-sequence+151 #0 condition-vendor-identifier ok",
    "shared-sequence+153 #0 condition-class-identifier ok",
]

# example -> (procedure, expected trace, failing (section, offset, component))
EXPECTED: dict[int, tuple[Procedure, list[str], tuple[int, int, int]]] = {
    0: (
        Procedure.INVOCATION,
        [*SHARED_1, "validate+1 #0 condition-image-match FAIL"],
        (ManifestKey.VALIDATE, 1, 0),
    ),
    1: (
        Procedure.UPDATE,
        [
            *SHARED_1,
            "install+1 #0 directive-override-parameters ok",
            "install+33 #0 directive-fetch ok",
            "install+35 #0 condition-image-match FAIL",
        ],
        (ManifestKey.INSTALL, 35, 0),
    ),
    2: (
        Procedure.UPDATE,
        [
            *SHARED_1,
            "install+1 #0 directive-override-parameters ok",
            "install+56 #0 directive-fetch ok",
            "install+58 #0 condition-image-match FAIL",
        ],
        (ManifestKey.INSTALL, 58, 0),
    ),
    3: (
        Procedure.UPDATE,
        [
            *SHARED_AB,
            "install+1 #0 directive-try-each ...",
            "install+6 #0 directive-override-parameters ok",
            "install+10 #0 condition-component-slot soft-fail",
            "install+48 #0 directive-override-parameters ok",
            "install+52 #0 condition-component-slot ok",
            "install+54 #0 directive-override-parameters ok",
            "install+1 #0 directive-try-each ok",
            "install+87 #0 directive-fetch ok",
            "install+89 #0 condition-image-match FAIL",
        ],
        (ManifestKey.INSTALL, 89, 0),
    ),
    4: (
        Procedure.UPDATE,
        [
            *SHARED_MULTI,
            "payload-fetch+1 #- directive-set-component-index ok",
            "payload-fetch+3 #1 directive-override-parameters ok",
            "payload-fetch+74 #1 directive-fetch ok",
            "payload-fetch+76 #1 condition-image-match FAIL",
        ],
        (ManifestKey.PAYLOAD_FETCH, 76, 1),
    ),
    5: (
        Procedure.UPDATE,
        [
            *SHARED_MULTI,
            "shared-sequence+88 #- directive-set-component-index ok",
            "shared-sequence+90 #1 directive-override-parameters ok",
            "install+1 #- directive-set-component-index ok",
            "install+3 #0 directive-override-parameters ok",
            "install+36 #0 directive-fetch ok",
            "install+38 #0 condition-image-match FAIL",
        ],
        (ManifestKey.INSTALL, 38, 0),
    ),
}


@pytest.mark.parametrize("n", sorted(EXPECTED))
def test_appendix_b_example_runs_to_the_failing_image_match(n: int) -> None:
    """Each example passes its compatibility checks (§7.1) on a device with the examples' ids and
    fails condition-image-match (§8.4.9.2) with condition-failed, since its payload differs."""
    procedure, expected, (section, offset, ci) = EXPECTED[n]
    device = memory_device(FAKE, slot=1)
    if n == 0:  # secure boot: some image is in the component already
        device.components_[C0].content = bytearray(b"x" * 34768)
    result = Processor(device).run(example(n), procedure)
    assert trace(result) == expected
    err = result.error
    assert isinstance(err, ConditionFailedError)
    assert err.reason is ReportReason.CONDITION_FAILED
    assert (err.section, err.offset, err.component_index) == (section, offset, ci)
    assert device.invocations == []
    assert device.sequence_numbers == {}
    # the report's result names the same record (report §4.2), with the measured digest (§3)
    from suitkit.device.report import build_report
    from suitkit.format.codepoints import Parameter

    failure = build_report(result).result
    assert failure is not None and failure.reason is ReportReason.CONDITION_FAILED
    rec = failure.record
    assert (rec.section, rec.offset, rec.component_index) == (section, offset, ci)
    assert Parameter.IMAGE_DIGEST in rec.properties


def test_example_2_severed_without_its_install_member_is_severing_unsupported() -> None:
    """§8.5: a severed member that the procedure needs and the envelope lacks."""
    device = memory_device(FAKE)
    env = example(2, severed=True)
    with pytest.raises(SeveringUnsupportedError) as exc:
        Processor(device).update(env)
    assert exc.value.section == ManifestKey.INSTALL
    assert device.writes == 0


def test_example_2_severed_still_boots_because_validate_and_invoke_are_never_severed() -> None:
    device = memory_device(FAKE)
    device.components_[C0].content = bytearray(b"w" * 34768)
    result = Processor(device).run(example(2, severed=True), Procedure.INVOCATION)
    assert result.error is not None and result.error.section == ManifestKey.VALIDATE


# --- builder twins with real payloads ----------------------------------------------------------


def _twin(n: int, files: dict[str, Path]) -> dict[str, Any]:
    f1, f2 = str(files["file1.bin"]), str(files["file2.bin"])
    ids = {"vendor-id": VENDOR, "class-id": CLASS}
    descs: dict[int, dict[str, Any]] = {
        0: {"components": [{"id": ["h'00'"], **ids, "payload": f1, "invoke": True}]},
        1: {"components": [{"id": ["h'00'"], **ids, "payload": f1, "uri": "http://example.com/file.bin"}]},
        2: {
            "reference-uri": "https://git.io/JJYoj",
            "severable": ["install", "text"],
            "text": {"en-US": {"manifest-description": "twin of example 2"}},
            "components": [
                {"id": ["h'00'"], **ids, "payload": f1, "invoke": True,
                 "uri": "http://example.com/very/long/path/to/file/file.bin"}
            ],
        },
        3: {
            "components": [
                {"id": ["h'00'"], **ids, "slots": [
                    {"slot": 0, "payload": f1, "uri": "http://example.com/file1.bin"},
                    {"slot": 1, "payload": f2, "uri": "http://example.com/file2.bin"},
                ]}
            ]
        },
        4: {
            "components": [
                {"id": ["h'00'"], **ids, "payload": f1, "install-from": 1},
                {"id": ["h'02'"], "payload": f1, "uri": "http://example.com/file.bin",
                 "fetch-in": "payload-fetch", "validate": False},
                {"id": ["h'01'"], "payload": f1, "load-from": 0, "invoke": True},
            ]
        },
        5: {
            "components": [
                {"id": ["h'00'"], **ids, "payload": f1, "uri": "http://example.com/file1.bin",
                 "invoke": True},
                {"id": ["h'01'"], "payload": f2, "uri": "http://example.com/file2.bin"},
            ]
        },
    }
    return {"sequence-number": n, **descs[n]}


@pytest.mark.parametrize("n", range(6))
def test_appendix_b_twin_with_real_payloads_updates_and_boots(
    n: int, payload_files: dict[str, Path]
) -> None:
    """The same templates with payloads that exist: Update succeeds, Invocation succeeds and
    invokes what the example invokes (examples 1 and 3 have no invoke section)."""
    env = build_from_description(_twin(n, payload_files))
    one, two = payload_files["file1.bin"].read_bytes(), payload_files["file2.bin"].read_bytes()
    payloads = {
        "http://example.com/file.bin": one,
        "http://example.com/file1.bin": one,
        "http://example.com/file2.bin": two,
        "http://example.com/very/long/path/to/file/file.bin": one,
    }
    device = memory_device(payloads, slot=1)
    proc = Processor(device)
    if n == 0:
        device.components_[C0].content = bytearray(one)
    else:
        proc.update(env)
        assert device.sequence_numbers == {"root": n}
    result = proc.invoke(env)
    invoked = {0: [C0], 1: [], 2: [C0], 3: [], 4: [C1], 5: [C0]}[n]
    assert list(result.invoked) == invoked
    assert [c for c, _ in device.invocations] == invoked
    if n == 3:  # the device designates slot 1, so the slot-1 image was chosen
        assert bytes(device.components_[C0].content or b"") == two
    if n == 4:
        assert bytes(device.components_[C2].content or b"") == one
        assert bytes(device.components_[C1].content or b"") == one


def test_twin_of_example_3_in_slot_0_installs_the_slot_0_image(
    payload_files: dict[str, Path]
) -> None:
    """A/B template (§7.7): the image is selected by condition-component-slot."""
    env = build_from_description(_twin(3, payload_files))
    one = payload_files["file1.bin"].read_bytes()
    device = memory_device(
        {"http://example.com/file1.bin": one},
        components={C0: MemoryComponent(1 << 20, slot=0)},
    )
    Processor(device).update(env)
    assert bytes(device.components_[C0].content or b"") == one
