"""The abstract machine of manifest §6.4-§6.7 and the command semantics of §8.4.8-§8.4.10."""

from __future__ import annotations

from typing import Any

import pytest

from suitkit.author.builder import build_from_description
from suitkit.device.events import Procedure
from suitkit.device.memory import MemoryComponent
from suitkit.device.processor import ManifestRejectedError, Processor
from suitkit.errors import (
    CommandUnsupportedError,
    ComponentUnsupportedError,
    ConditionFailedError,
    OperationFailedError,
    ParameterUnsupportedError,
    RollbackError,
    SuitError,
)
from suitkit.format.codepoints import ManifestKey, ReportReason
from suitkit.format.commands import CommandSequence, CustomCommand, UnknownCommand
from suitkit.format.manifest import Manifest

from .conftest import C0, C1, C2, CLASS, VENDOR, explicit, memory_device, sha

IMG = b"image-bytes" * 100
URI = "http://example.com/img.bin"


def run(env: Any, procedure: Procedure = Procedure.UPDATE, **kw: Any) -> Any:
    device = kw.pop("device", None) or memory_device({URI: IMG})
    return device, Processor(device, **kw).run(env, procedure)


# --- soft-failure, try-each, run-sequence (§8.4.8.14, §8.4.10.2, §8.4.10.8) ---


def test_try_each_defaults_soft_failure_to_true_and_takes_the_first_passing_alternative() -> None:
    env = explicit(install=[
        {"try-each": [
            [{"abort": 15}],
            [{"override-parameters": {"content": "h'01'"}}, {"write": 2}],
            [{"override-parameters": {"content": "h'02'"}}, {"write": 2}],
        ]},
    ])
    device, result = run(env)
    assert result.ok
    assert bytes(device.components_[C0].content or b"") == b"\x01"


def test_try_each_without_nil_fails_with_condition_failed_when_every_alternative_fails() -> None:
    env = explicit(install=[{"try-each": [[{"abort": 15}], [{"abort": 15}]]}])
    _, result = run(env)
    assert isinstance(result.error, ConditionFailedError)
    assert result.error.section == ManifestKey.INSTALL and result.error.offset == 1


def test_try_each_with_trailing_nil_succeeds_when_every_alternative_fails() -> None:
    env = explicit(install=[{"try-each": [[{"abort": 15}], [{"abort": 15}], None]}])
    _, result = run(env)
    assert result.ok


def test_soft_failure_false_inside_try_each_makes_a_condition_failure_abort() -> None:
    env = explicit(install=[{"try-each": [
        [{"override-parameters": {"soft-failure": False}}, {"abort": 15}],
        [{"override-parameters": {"content": "h'01'"}}, {"write": 2}],
    ]}])
    _, result = run(env)
    assert isinstance(result.error, ConditionFailedError)


def test_directive_failure_in_try_each_aborts_regardless_of_soft_failure() -> None:
    """§6.4: the interpreter MUST abort if a directive fails, whatever soft-failure says."""
    env = explicit(install=[{"try-each": [
        [{"override-parameters": {"uri": "http://nowhere/x"}}, {"fetch": 2}],
        [{"override-parameters": {"content": "h'01'"}}, {"write": 2}],
    ]}])
    _, result = run(env)
    assert isinstance(result.error, OperationFailedError)


def test_run_sequence_defaults_soft_failure_to_false() -> None:
    env = explicit(install=[{"run-sequence": [{"abort": 15}]}])
    _, result = run(env)
    assert isinstance(result.error, ConditionFailedError)


def test_run_sequence_with_soft_failure_halts_without_side_effects_and_continues() -> None:
    env = explicit(install=[
        {"run-sequence": [
            {"override-parameters": {"soft-failure": True, "content": "h'aa'"}},
            {"abort": 15},
        ]},
        {"override-parameters": {"content": "h'bb'"}},
        {"write": 2},
    ])
    device, result = run(env)
    assert result.ok
    assert bytes(device.components_[C0].content or b"") == b"\xbb"
    assert any(e.soft for e in result.events)


def test_soft_failure_reverts_at_the_end_of_its_sequence() -> None:
    """Set true in a run-sequence; the enclosing try-each alternative's value (true) is back,
    then the outer top-level value (false): a later failing condition aborts."""
    env = explicit(install=[
        {"run-sequence": [{"override-parameters": {"soft-failure": True}}]},
        {"abort": 15},
    ])
    _, result = run(env)
    assert isinstance(result.error, ConditionFailedError)


def test_setting_soft_failure_outside_try_each_or_run_sequence_aborts() -> None:
    env = explicit(install=[{"override-parameters": {"soft-failure": True}}])
    _, result = run(env)
    assert isinstance(result.error, OperationFailedError)
    assert result.error.section == ManifestKey.INSTALL


def test_nested_sequences_do_not_inherit_soft_failure() -> None:
    """A run-sequence nested in a try-each alternative starts with soft-failure false."""
    env = explicit(install=[{"try-each": [
        [{"run-sequence": [{"abort": 15}]}],
        [{"override-parameters": {"content": "h'01'"}}, {"write": 2}],
    ]}])
    device, result = run(env)
    # the run-sequence fails hard, which is a condition failure in the alternative; the
    # alternative's soft-failure (true) then moves on to the next alternative
    assert result.ok
    assert bytes(device.components_[C0].content or b"") == b"\x01"


# --- component index (§6.5) ---


def _three(**sections: Any) -> Any:
    return explicit(components=3, **sections)


def test_component_index_true_applies_each_command_to_every_component() -> None:
    env = _three(install=[
        {"set-component-index": True},
        {"override-parameters": {"content": "h'07'"}},
        {"write": 2},
        {"check-content": 15},
    ])
    device, result = run(env)
    assert result.ok
    for cid in (C0, C1, C2):
        assert bytes(device.components_[cid].content or b"") == b"\x07"
    assert [e.component_index for e in result.events if e.name == "directive-write"] == [0, 1, 2]


def test_component_index_list_applies_to_the_listed_components_in_order() -> None:
    env = _three(install=[
        {"set-component-index": [2, 0]},
        {"override-parameters": {"content": "h'08'"}},
        {"write": 2},
    ])
    device, result = run(env)
    assert result.ok
    assert device.components_[C1].content is None
    assert [e.component_index for e in result.events if e.name == "directive-write"] == [2, 0]


def test_run_sequence_with_index_true_runs_once_per_component_with_integer_indices() -> None:
    env = _three(install=[
        {"set-component-index": True},
        {"run-sequence": [{"override-parameters": {"content": "h'09'"}}, {"write": 2}]},
    ])
    _, result = run(env)
    assert result.ok
    writes = [e for e in result.events if e.name == "directive-write"]
    assert [e.component_index for e in writes] == [0, 1, 2]


def test_multi_component_sequence_must_begin_with_set_component_index() -> None:
    env = build_from_description({
        "sequence-number": 1, "components": [["h'00'"], ["h'01'"]],
        "shared-sequence": [
            {"override-parameters": {"vendor-id": VENDOR, "class-id": CLASS}},
            {"vendor-identifier": 15}, {"class-identifier": 15},
        ],
    })
    device, result = run(env)
    assert isinstance(result.error, ManifestRejectedError)
    assert result.error.section == ManifestKey.COMMON and device.writes == 0


def test_set_component_index_beyond_the_manifest_components_is_refused() -> None:
    env = explicit(components=2, install=[{"set-component-index": 5}])
    _, result = run(env)
    assert isinstance(result.error, ComponentUnsupportedError)


# --- parameters are scoped per component (§8.4.8) ---


def test_parameters_are_scoped_to_their_component() -> None:
    env = explicit(components=2, install=[
        {"set-component-index": 0},
        {"override-parameters": {"content": "h'01'"}},
        {"set-component-index": 1},
        {"write": 2},
    ])
    _, result = run(env)
    assert isinstance(result.error, OperationFailedError)
    assert result.error.component_index == 1


def test_set_parameters_does_not_replace_a_parameter_already_set() -> None:
    env = explicit(install=[
        {"override-parameters": {"content": "h'01'"}},
        {"set-parameters": {"content": "h'02'"}},
        {"write": 2},
    ])
    device, result = run(env)
    assert result.ok and bytes(device.components_[C0].content or b"") == b"\x01"


# --- strict order and the Parallel Processing Interpreter (§6.7) ---


def test_component_both_source_and_target_while_strict_order_false_aborts() -> None:
    env = explicit(components=2, install=[
        {"set-component-index": 0},
        {"override-parameters": {"strict-order": False, "content": "h'01'"}},
        {"write": 2},
        {"set-component-index": 1},
        {"override-parameters": {"source-component": 0}},
        {"copy": 2},
    ])
    _, result = run(env)
    assert isinstance(result.error, OperationFailedError)
    assert "strict-order" in result.error.message


def test_the_same_copy_with_strict_order_true_is_fine() -> None:
    env = explicit(components=2, install=[
        {"set-component-index": 0},
        {"override-parameters": {"content": "h'01'"}},
        {"write": 2},
        {"set-component-index": 1},
        {"override-parameters": {"source-component": 0}},
        {"copy": 2},
    ])
    device, result = run(env)
    assert result.ok and bytes(device.components_[C1].content or b"") == b"\x01"


def test_second_set_component_index_in_isolated_run_sequence_aborts() -> None:
    env = explicit(components=2, install=[
        {"set-component-index": 0},
        {"override-parameters": {"strict-order": False}},
        {"run-sequence": [
            {"set-component-index": 1},
            {"set-component-index": 0},
        ]},
    ])
    _, result = run(env)
    assert isinstance(result.error, OperationFailedError)
    assert "set-component-index" in result.error.message


def test_isolated_run_sequence_with_integer_index_must_begin_with_set_component_index() -> None:
    env = explicit(components=2, install=[
        {"set-component-index": 0},
        {"override-parameters": {"strict-order": False}},
        {"run-sequence": [{"override-parameters": {"content": "h'01'"}}]},
    ])
    _, result = run(env)
    assert isinstance(result.error, OperationFailedError)


def test_isolated_run_sequence_beginning_with_set_component_index_runs_in_strict_order() -> None:
    env = explicit(components=2, install=[
        {"set-component-index": 0},
        {"override-parameters": {"strict-order": False}},
        {"run-sequence": [
            {"set-component-index": 1},
            {"override-parameters": {"content": "h'05'"}},
            {"write": 2},
        ]},
    ])
    device, result = run(env)
    assert result.ok and bytes(device.components_[C1].content or b"") == b"\x05"


# --- conditions ---


@pytest.mark.parametrize(
    ("param", "condition"),
    [("vendor-id", "vendor-identifier"), ("class-id", "class-identifier"),
     ("device-id", "device-identifier")],
)
def test_identifier_condition_fails_on_a_different_identifier(param: str, condition: str) -> None:
    env = explicit(install=[
        {"override-parameters": {param: "00000000-0000-0000-0000-000000000001"}},
        {condition: 15},
    ])
    _, result = run(env)
    assert isinstance(result.error, ConditionFailedError)


def test_identifier_condition_fails_when_its_parameter_is_not_set() -> None:
    env = explicit(install=[{"device-identifier": 15}])
    _, result = run(env)
    assert isinstance(result.error, ConditionFailedError)


def test_device_identifier_condition_passes_for_this_device() -> None:
    env = explicit(install=[
        {"override-parameters": {"device-id": "00000000-0000-0000-0000-000000000007"}},
        {"device-identifier": 15},
    ])
    assert run(env)[1].ok


def test_check_content_compares_the_whole_component() -> None:
    env = explicit(install=[
        {"override-parameters": {"content": "h'010203'"}},
        {"write": 2},
        {"check-content": 15},
        {"override-parameters": {"content": "h'010204'"}},
        {"check-content": 15},
    ])
    _, result = run(env)
    assert isinstance(result.error, ConditionFailedError)
    assert [e.ok for e in result.events if e.name == "condition-check-content"] == [True, False]


def test_component_slot_condition_compares_with_the_slot_the_component_designates() -> None:
    env = explicit(install=[{"override-parameters": {"slot": 1}}, {"component-slot": 15}])
    device = memory_device({}, slot=1)
    assert run(env, device=device)[1].ok
    device = memory_device({}, slot=0)
    assert isinstance(run(env, device=device)[1].error, ConditionFailedError)


def test_image_match_without_image_digest_fails() -> None:
    env = explicit(install=[{"override-parameters": {"content": "h'01'"}}, {"write": 2},
                            {"image-match": 15}])
    assert isinstance(run(env)[1].error, ConditionFailedError)


# --- directives ---


def test_fetch_passes_fetch_arguments_to_the_fetcher() -> None:
    env = explicit(install=[
        {"override-parameters": {"uri": URI, "fetch-arguments": "h'c0ffee'", "digest": sha(IMG)}},
        {"fetch": 2},
        {"image-match": 15},
    ])
    device, result = run(env)
    assert result.ok
    assert device.fetcher.requests == [(URI, b"\xc0\xff\xee")]  # type: ignore[attr-defined]


def test_invoke_passes_invoke_args() -> None:
    env = explicit(
        shared=[{"override-parameters": {"digest": sha(IMG)}}],
        install=[{"override-parameters": {"uri": URI}}, {"fetch": 2}, {"image-match": 15}],
        validate=[{"image-match": 15}],
        invoke=[{"override-parameters": {"invoke-args": "h'6172677321'"}}, {"invoke": 2}],
    )
    device = memory_device({URI: IMG})
    proc = Processor(device)
    proc.update(env)
    proc.invoke(env)
    assert device.invocations == [(C0, b"args!")]


def test_swap_exchanges_two_components() -> None:
    env = explicit(components=2, install=[
        {"set-component-index": 0}, {"override-parameters": {"content": "h'aa'"}}, {"write": 2},
        {"set-component-index": 1}, {"override-parameters": {"content": "h'bbbb'"}}, {"write": 2},
        {"override-parameters": {"source-component": 0}}, {"swap": 2},
    ])
    device, result = run(env)
    assert result.ok
    assert bytes(device.components_[C0].content or b"") == b"\xbb\xbb"
    assert bytes(device.components_[C1].content or b"") == b"\xaa"


def test_copy_from_an_empty_component_fails() -> None:
    env = explicit(components=2, install=[
        {"set-component-index": 1}, {"override-parameters": {"source-component": 0}}, {"copy": 2},
    ])
    assert isinstance(run(env)[1].error, OperationFailedError)


def test_integrated_payload_is_taken_from_the_envelope() -> None:
    env = build_from_description({
        "sequence-number": 1, "components": [["h'00'"]],
        "shared-sequence": [
            {"override-parameters": {"vendor-id": VENDOR, "class-id": CLASS, "digest": sha(IMG)}},
            {"vendor-identifier": 15}, {"class-identifier": 15},
        ],
        "install": [{"override-parameters": {"uri": "#img"}}, {"fetch": 2}, {"image-match": 15}],
        "integrated-payloads": {"#img": "h'" + IMG.hex() + "'"},
    })
    device = memory_device({})
    Processor(device).update(env)
    assert bytes(device.components_[C0].content or b"") == IMG
    assert device.fetcher.requests == []  # type: ignore[attr-defined]


def test_custom_command_is_handed_to_the_platform() -> None:
    env = explicit(install=[{"custom(-300)": "h'0102'"}])
    device = memory_device({})
    seen: list[Any] = []
    device.custom[-300] = lambda arg, cid, params: seen.append((arg, cid))
    assert run(env, device=device)[1].ok
    assert seen == [(b"\x01\x02", C0)]


def test_unknown_custom_command_is_command_unsupported_before_anything_runs() -> None:
    env = explicit(install=[{"override-parameters": {"content": "h'01'"}}, {"write": 2},
                            {"custom(-301)": 1}])
    device, result = run(env)
    assert isinstance(result.error, CommandUnsupportedError)
    assert result.error.reason is ReportReason.COMMAND_UNSUPPORTED
    assert result.error.section == ManifestKey.INSTALL
    assert result.events == () and device.writes == 0


def test_custom_command_in_the_shared_sequence_is_refused() -> None:
    env = explicit(shared=[{"custom(-300)": 1}])
    device = memory_device({})
    device.custom[-300] = lambda *a: None
    assert isinstance(run(env, device=device)[1].error, CommandUnsupportedError)


def _with_install(install: CommandSequence) -> Any:
    from dataclasses import replace

    from suitkit.author.builder import envelope_for

    base = explicit(install=[{"abort": 15}])
    m: Manifest = replace(base.manifest, install=install)
    return envelope_for(m)


def test_unknown_command_is_command_unsupported() -> None:
    env = _with_install(CommandSequence([UnknownCommand(99, 0)]))
    result = run(env)[1]
    assert isinstance(result.error, CommandUnsupportedError)
    assert result.error.offset == 1


def test_unimplemented_registered_command_is_command_unsupported() -> None:
    env = explicit(install=[{"use-before": 15}])
    assert isinstance(run(env)[1].error, CommandUnsupportedError)


def test_unsupported_parameter_is_parameter_unsupported() -> None:
    env = explicit(install=[{"override-parameters": {"minimum-battery": 10}}])
    result = run(env)[1]
    assert isinstance(result.error, ParameterUnsupportedError)
    assert result.error.reason is ReportReason.PARAMETER_UNSUPPORTED


def test_custom_command_object_round_trip() -> None:
    assert CustomCommand(-300, 1).name == "custom(-300)"


# --- setup (§6.1, §6.2) ---


def test_manifest_version_other_than_1_is_refused() -> None:
    from dataclasses import replace

    from suitkit.author.builder import envelope_for

    env = envelope_for(replace(explicit().manifest, version=2))
    result = run(env)[1]
    assert isinstance(result.error, ManifestRejectedError)
    assert result.error.section == ManifestKey.MANIFEST_VERSION


def test_lower_sequence_number_is_rollback_equal_is_allowed() -> None:
    device = memory_device({})
    device.sequence_numbers["root"] = 5
    assert isinstance(run(explicit(seq=4), device=device)[1].error, RollbackError)
    assert run(explicit(seq=5), device=device)[1].ok
    assert run(explicit(seq=6), device=device)[1].ok
    assert device.sequence_numbers["root"] == 6


def test_more_components_than_the_device_has_is_component_unsupported() -> None:
    env = explicit(components=3)
    device = memory_device({}, components={C0: 10, C1: 10})
    result = run(env, device=device)[1]
    assert isinstance(result.error, ComponentUnsupportedError)


def test_component_the_device_does_not_have_is_component_unsupported() -> None:
    env = build_from_description({
        "sequence-number": 1, "components": [["h'09'"]],
        "shared-sequence": [
            {"override-parameters": {"vendor-id": VENDOR, "class-id": CLASS}},
            {"vendor-identifier": 15}, {"class-identifier": 15},
        ],
    })
    result = run(env)[1]
    assert isinstance(result.error, ComponentUnsupportedError)
    assert result.error.reason is ReportReason.COMPONENT_UNSUPPORTED


def test_shared_sequence_without_identity_checks_is_refused_by_default() -> None:
    env = explicit(identity=False, install=[{"abort": 15}])
    assert isinstance(run(env)[1].error, ManifestRejectedError)
    result = run(env, require_identity_checks=False)[1]
    assert isinstance(result.error, ConditionFailedError)


def test_errors_carry_section_offset_and_component_index() -> None:
    env = explicit(components=2, install=[{"set-component-index": 1}, {"abort": 15}])
    err = run(env)[1].error
    assert isinstance(err, SuitError)
    assert (err.section, err.offset, err.component_index) == (ManifestKey.INSTALL, 3, 1)
    assert "section install, offset 3, component 1" in str(err)


def test_invocation_procedure_runs_validate_load_invoke_not_install() -> None:
    env = explicit(
        install=[{"abort": 15}], validate=[{"override-parameters": {"content": "h'01'"}}]
    )
    result = run(env, Procedure.INVOCATION)[1]
    assert result.ok
    assert {e.section for e in result.events} == {ManifestKey.COMMON, ManifestKey.VALIDATE}


def test_update_of_slot_component_in_memory_uses_capacity() -> None:
    device = memory_device({URI: IMG}, components={C0: MemoryComponent(len(IMG) - 1)})
    env = explicit(install=[{"override-parameters": {"uri": URI}}, {"fetch": 2}])
    result = run(env, device=device)[1]
    assert isinstance(result.error, OperationFailedError)
    assert device.components_[C0].content is None


# --- unsupported elements are refused before anything runs (report §4.2 reasons) -------------


def test_unsupported_image_digest_algorithm_is_alg_unsupported_before_anything_is_written() -> None:
    """An image-digest whose algorithm the processor cannot compute is refused during setup
    (alg-unsupported), not after the payload was written and image-match found it out."""
    from suitkit.errors import AlgorithmUnsupportedError

    env = explicit(
        shared=[{"override-parameters": {"digest": {"algorithm": -99, "value": "00" * 32}}}],
        install=[{"override-parameters": {"uri": URI}}, {"fetch": 2}, {"image-match": 15}],
    )
    device, result = run(env)
    assert isinstance(result.error, AlgorithmUnsupportedError)
    assert result.error.reason is ReportReason.ALG_UNSUPPORTED
    assert result.error.section == ManifestKey.COMMON and result.error.offset is not None
    assert result.events == () and device.writes == 0


def test_use_before_is_command_unsupported_by_this_core_processor() -> None:
    """suit-condition-use-before belongs to draft-ietf-suit-update-management, which this
    processor does not implement: a manifest that relies on it is refused, not half-run."""
    env = explicit(install=[{"use-before": 15}])
    device, result = run(env)
    assert isinstance(result.error, CommandUnsupportedError)
    assert result.events == () and device.writes == 0


# --- payloads larger than their component (issue item 6) ----------------------------------------


def test_image_size_larger_than_the_component_is_refused_before_the_first_write() -> None:
    device = memory_device({URI: IMG}, capacity=len(IMG) - 1)
    device.components_[C0].content = bytearray(b"old")
    env = explicit(install=[
        {"override-parameters": {"uri": URI, "size": len(IMG), "digest": sha(IMG)}},
        {"fetch": 2},
    ])
    _, result = run(env, device=device)
    assert isinstance(result.error, OperationFailedError)
    assert "refused before writing" in result.error.message
    assert device.writes == 0 and bytes(device.components_[C0].content or b"") == b"old"


@pytest.mark.parametrize("source", ["fetch", "integrated", "write"])
def test_payload_larger_than_the_component_is_refused_at_the_first_byte_past_the_end(
    source: str,
) -> None:
    """Without image-size, the component's size is the limit: the byte after it is refused, the
    writer is aborted, nothing is committed (fetched, integrated and content payloads alike)."""
    capacity = len(IMG) - 10
    device = memory_device({URI: IMG}, capacity=capacity)
    if source == "write":
        cmds: list[Any] = [{"override-parameters": {"content": f"h'{IMG.hex()}'"}}, {"write": 2}]
    else:
        uri = URI if source == "fetch" else "#img"
        cmds = [{"override-parameters": {"uri": uri}}, {"fetch": 2}]
    env = explicit(install=cmds)
    if source == "integrated":
        from dataclasses import replace

        env = replace(env, integrated_payloads={"#img": IMG})
    _, result = run(env, device=device)
    assert isinstance(result.error, OperationFailedError)
    assert f"refused at byte {capacity + 1}" in result.error.message
    assert device.bytes_written <= capacity
    assert device.components_[C0].content is None and device.sequence_numbers == {}


# --- procedures, constant-time check-content, fetchers, no I/O in the processor ------------------


def test_procedures_run_their_sections_in_order_each_after_the_shared_sequence() -> None:
    """Manifest §8.4.6: Update = payload-fetch, install, validate; Invocation = validate, load,
    invoke; each preceded by the shared sequence (the platform sees each section begin)."""
    noop = [{"override-parameters": {"content": "h'00'"}}]
    env = explicit(
        payload_fetch=noop, install=noop, validate=noop, load=noop,
        invoke=[{"override-parameters": {"invoke-args": "h'00'"}}],
    )
    device = memory_device()
    Processor(device).run(env, Procedure.UPDATE).check()
    Processor(device).run(env, Procedure.INVOCATION).check()
    keys = [section for _, section in device.sections]
    assert keys == [
        ManifestKey.COMMON, ManifestKey.PAYLOAD_FETCH, ManifestKey.INSTALL, ManifestKey.VALIDATE,
        ManifestKey.COMMON, ManifestKey.VALIDATE, ManifestKey.LOAD, ManifestKey.INVOKE,
    ]


def test_check_content_is_constant_time_it_reads_every_chunk_after_a_first_byte_mismatch() -> None:
    """§8.4.9.3 "MUST be constant time: no early exits": a difference in the first byte still
    reads and compares the whole component."""
    from suitkit.device.processor import ProcessorLimits

    content = bytes(range(256)) * 8
    device = memory_device()
    device.components_[C0].content = bytearray(b"\xff" + content[1:])
    chunks: list[int] = []
    original = device.read

    def counting_read(component: tuple[bytes, ...], chunk_size: int) -> Any:
        for chunk in original(component, chunk_size):
            chunks.append(len(chunk))
            yield chunk

    device.read = counting_read  # type: ignore[method-assign]
    env = explicit(install=[
        {"override-parameters": {"content": f"h'{content.hex()}'"}},
        {"check-content": 15},
    ])
    result = Processor(device, limits=ProcessorLimits(chunk_size=64)).run(env, Procedure.UPDATE)
    assert isinstance(result.error, ConditionFailedError)
    assert sum(chunks) == len(content) and len(chunks) == len(content) // 64


def test_file_uri_is_fetched_and_a_remote_file_host_is_refused(tmp_path: Any) -> None:
    from suitkit.device.fetch import FileFetcher

    path = tmp_path / "fw.bin"
    path.write_bytes(IMG)
    fetcher = FileFetcher(chunk_size=100)
    assert b"".join(fetcher.fetch(path.as_uri())) == IMG
    with pytest.raises(OperationFailedError, match="remote host"):
        list(fetcher.fetch("file://elsewhere.example/fw.bin"))
    with pytest.raises(OperationFailedError, match="does not exist"):
        list(fetcher.fetch((tmp_path / "missing.bin").as_uri()))
    with pytest.raises(OperationFailedError, match="more than the 10 accepted"):
        list(fetcher.fetch(path.as_uri(), limit=10))  # the size is known: refused up front
    device = memory_device()
    device.fetcher = fetcher
    env = explicit(install=[
        {"override-parameters": {"uri": path.as_uri(), "digest": sha(IMG), "size": len(IMG)}},
        {"fetch": 2},
        {"image-match": 15},
    ])
    assert Processor(device).run(env, Procedure.UPDATE).ok
    assert bytes(device.components_[C0].content or b"") == IMG


def test_the_processor_imports_no_io_module() -> None:
    """Issue item 3: the processor holds no I/O of its own (everything goes through the
    Platform protocols); importing it pulls in no HTTP client, socket or file system code of
    the device side."""
    import subprocess
    import sys

    code = (
        "import sys, suitkit.device.processor as p; "
        "bad = [m for m in ('httpx', 'socket', 'suitkit.device.fetch', 'suitkit.device.simulated',"
        " 'suitkit.device.http_fetch') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
