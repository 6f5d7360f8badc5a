"""The manifest builder: a description of what to update becomes a SUIT envelope.

Two levels (see ``docs/descriptions.md`` for the full format):

- **High level**: components with their identifiers, payloads and where the payloads come from;
  :func:`compile_manifest` writes the command sequences following the templates of manifest §7
  (compatibility check, trusted invocation, component download, install, integrated payload,
  load, A/B images).
- **Explicit**: every command sequence written command by command with the spec's names
  (``condition-image-match: 15``), as the diagnostic notation shows them.

Both produce a :class:`~suitkit.format.envelope.Envelope` with a digest-only authentication
wrapper; signing is a separate, last step (:mod:`suitkit.author.signing`), so that an HSM or a KMS
can sign.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suitkit.author.values import (
    DescriptionError,
    class_id_from_info,
    component_id,
    digest_algorithm,
    parameter_code,
    parameter_value,
    to_bytes,
    to_digest,
    to_uint,
    to_uuid,
    vendor_id_from_domain,
)
from suitkit.format.codepoints import (
    Command,
    CoseAlgorithm,
    ManifestKey,
    Parameter,
    TextComponentKey,
    TextKey,
)
from suitkit.format.commands import (
    CommandSequence,
    ConditionClassIdentifier,
    ConditionComponentSlot,
    ConditionImageMatch,
    ConditionVendorIdentifier,
    CustomCommand,
    DirectiveCopy,
    DirectiveFetch,
    DirectiveInvoke,
    DirectiveWrite,
    OverrideParameters,
    RunSequence,
    SetComponentIndex,
    SetParameters,
    SuitCommand,
    TryEach,
    policy_command,
)
from suitkit.format.digest import Digest
from suitkit.format.envelope import AuthenticationWrapper, Envelope, SeverableMember
from suitkit.format.manifest import Common, ComponentIdentifier, Manifest, TextLMap, TextMap
from suitkit.format.parameters import EncryptionInfo, Parameters

# Reporting policies the spec's examples use (Appendix B): all four bits on conditions,
# record-on-failure on directives, success records and sysinfo on the slot check of A/B.
DEFAULT_CONDITION_POLICY = 15
DEFAULT_DIRECTIVE_POLICY = 2
DEFAULT_SLOT_POLICY = 5

_CHUNK = 1 << 20


# --- the typed high-level description ---------------------------------------------------------


@dataclass(frozen=True)
class SlotImage:
    """One image of an A/B component (manifest §7.7 "A/B Image Template")."""

    slot: int
    digest: Digest
    size: int
    uri: str | None = None


@dataclass(frozen=True)
class ComponentSpec:
    """What one component should hold after the update, and where it comes from."""

    id: ComponentIdentifier
    vendor_id: uuid.UUID | None = None
    class_id: uuid.UUID | None = None
    digest: Digest | None = None
    size: int | None = None
    uri: str | None = None
    #: "install" (Component Download template) or "payload-fetch" (fetch to stage, §7.4).
    fetch_in: str = "install"
    #: Index of a component to copy from in the install sequence (Install template).
    install_from: int | None = None
    #: Bytes written by directive-write (small payloads, §8.4.10.6).
    content: bytes | None = None
    slots: tuple[SlotImage, ...] = ()
    #: Load template: copy from this component index in the load sequence.
    load_from: int | None = None
    validate: bool = True
    invoke: bool = False
    invoke_args: bytes | None = None
    text: Mapping[int, str] = field(default_factory=dict)
    #: Integrated payload: the key in the envelope and its bytes (§7.5).
    integrated: tuple[str, bytes] | None = None
    #: suit-parameter-encryption-info (firmware encryption §3): set with the copy or write that
    #: decrypts into this component.
    encryption_info: EncryptionInfo | None = None


@dataclass(frozen=True)
class ManifestSpec:
    """A whole manifest, high level."""

    sequence_number: int
    components: tuple[ComponentSpec, ...]
    reference_uri: str | None = None
    severable: frozenset[int] = frozenset()
    text: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    condition_policy: int = DEFAULT_CONDITION_POLICY
    directive_policy: int = DEFAULT_DIRECTIVE_POLICY
    slot_policy: int = DEFAULT_SLOT_POLICY


@dataclass(frozen=True)
class BuildResult:
    """The unsigned envelope and what the build learned about the payloads."""

    envelope: Envelope
    payloads: Mapping[int, Path] = field(default_factory=dict)


# --- compiling the high-level form (manifest §7 templates) ---------------------------------------


def compile_manifest(spec: ManifestSpec) -> Envelope:
    """Write the command sequences for ``spec`` and assemble an unsigned envelope."""
    comps = spec.components
    if not comps:
        raise DescriptionError("a manifest needs at least one component", "components")
    multi = len(comps) > 1
    cond, direc = spec.condition_policy, spec.directive_policy

    def block(i: int, cmds: list[SuitCommand]) -> list[SuitCommand]:
        if not cmds:
            return []
        return ([SetComponentIndex(i)] if multi else []) + cmds

    shared: list[SuitCommand] = []
    validate: list[SuitCommand] = []
    payload_fetch: list[SuitCommand] = []
    install: list[SuitCommand] = []
    load: list[SuitCommand] = []
    invoke: list[SuitCommand] = []
    payloads: dict[str, bytes] = {}

    for i, c in enumerate(comps):
        where = f"components[{i}]"
        # Compatibility check and trusted invocation templates (§7.1, §7.2): identity, digest
        # and size go in the shared sequence, set with override-parameters (§7: "A digest MUST
        # always be set using Override Parameters").
        params: dict[int, Any] = {}
        if c.vendor_id is not None:
            params[Parameter.VENDOR_IDENTIFIER] = c.vendor_id
        if c.class_id is not None:
            params[Parameter.CLASS_IDENTIFIER] = c.class_id
        if c.load_from is None and not c.slots and c.fetch_in == "install":
            if c.digest is not None:
                params[Parameter.IMAGE_DIGEST] = c.digest
            if c.size is not None:
                params[Parameter.IMAGE_SIZE] = c.size
        s: list[SuitCommand] = []
        if params:
            s.append(OverrideParameters(Parameters(params)))
        if c.slots:
            s.append(
                TryEach(
                    tuple(
                        CommandSequence(
                            [
                                OverrideParameters(Parameters({Parameter.COMPONENT_SLOT: im.slot})),
                                ConditionComponentSlot(spec.slot_policy),
                                OverrideParameters(
                                    Parameters(
                                        {
                                            Parameter.IMAGE_DIGEST: im.digest,
                                            Parameter.IMAGE_SIZE: im.size,
                                        }
                                    )
                                ),
                            ]
                        )
                        for im in c.slots
                    )
                )
            )
        if c.vendor_id is not None:
            s.append(ConditionVendorIdentifier(cond))
        if c.class_id is not None:
            s.append(ConditionClassIdentifier(cond))
        shared += block(i, s)

        # Component download / integrated payload / install / write (§7.3-§7.5)
        fetch_cmds: list[SuitCommand] = []
        if c.slots and any(im.uri for im in c.slots):
            fetch_cmds.append(
                TryEach(
                    tuple(
                        CommandSequence(
                            [
                                OverrideParameters(Parameters({Parameter.COMPONENT_SLOT: im.slot})),
                                ConditionComponentSlot(spec.slot_policy),
                                OverrideParameters(Parameters({Parameter.URI: im.uri})),
                            ]
                        )
                        for im in c.slots
                        if im.uri
                    )
                )
            )
            fetch_cmds += [DirectiveFetch(direc), ConditionImageMatch(cond)]
        elif c.uri is not None:
            p: dict[int, Any] = {}
            if c.fetch_in == "payload-fetch" and c.digest is not None:
                p[Parameter.IMAGE_DIGEST] = c.digest
                if c.size is not None:
                    p[Parameter.IMAGE_SIZE] = c.size
            p[Parameter.URI] = c.uri
            fetch_cmds += [
                OverrideParameters(Parameters(p)),
                DirectiveFetch(direc),
                ConditionImageMatch(cond),
            ]
        if c.integrated is not None:
            payloads[c.integrated[0]] = c.integrated[1]
        if c.fetch_in == "payload-fetch":
            payload_fetch += block(i, fetch_cmds)
        elif c.fetch_in == "install":
            install += block(i, fetch_cmds)
        else:
            raise DescriptionError("fetch-in is 'install' or 'payload-fetch'", where)
        # firmware encryption §3: encryption-info is set together with the source (copy) or
        # the content (write) whose bytes the directive decrypts into this component
        decrypt: dict[int, Any] = (
            {Parameter.ENCRYPTION_INFO: c.encryption_info} if c.encryption_info else {}
        )
        if c.install_from is not None:
            install += block(
                i,
                [
                    OverrideParameters(
                        Parameters({Parameter.SOURCE_COMPONENT: c.install_from, **decrypt})
                    ),
                    DirectiveCopy(direc),
                    ConditionImageMatch(cond),
                ],
            )
        if c.content is not None:
            install += block(
                i,
                [
                    OverrideParameters(Parameters({Parameter.CONTENT: c.content, **decrypt})),
                    DirectiveWrite(direc),
                    ConditionImageMatch(cond),
                ],
            )
        # Load from nonvolatile storage template (§7.6)
        if c.load_from is not None:
            lp: dict[int, Any] = {}
            if c.digest is not None:
                lp[Parameter.IMAGE_DIGEST] = c.digest
            if c.size is not None:
                lp[Parameter.IMAGE_SIZE] = c.size
            lp[Parameter.SOURCE_COMPONENT] = c.load_from
            load += block(
                i,
                [
                    OverrideParameters(Parameters(lp)),
                    DirectiveCopy(direc),
                    ConditionImageMatch(cond),
                ],
            )
        if c.validate and (c.digest is not None or c.slots) and c.load_from is None:
            validate += block(i, [ConditionImageMatch(cond)])
        if c.invoke:
            inv: list[SuitCommand] = []
            if c.invoke_args is not None:
                inv.append(OverrideParameters(Parameters({Parameter.INVOKE_ARGS: c.invoke_args})))
            inv.append(DirectiveInvoke(direc))
            invoke += block(i, inv)

    sequences: dict[int, list[SuitCommand]] = {
        ManifestKey.VALIDATE: validate,
        ManifestKey.LOAD: load,
        ManifestKey.INVOKE: invoke,
        ManifestKey.PAYLOAD_FETCH: payload_fetch,
        ManifestKey.INSTALL: install,
    }
    text = _text_map(spec)
    return assemble(
        sequence_number=spec.sequence_number,
        components=tuple(c.id for c in comps),
        shared_sequence=CommandSequence(shared) if shared else None,
        sequences={k: CommandSequence(v) for k, v in sequences.items() if v},
        text=text,
        reference_uri=spec.reference_uri,
        severable=spec.severable,
        integrated_payloads=payloads,
    )


def _text_map(spec: ManifestSpec) -> TextMap | None:
    languages: dict[str, TextLMap] = {}
    for lang, texts in spec.text.items():
        languages[lang] = TextLMap(dict(texts), {})
    for c in spec.components:
        if c.text:
            lang = next(iter(spec.text), "en-US")
            base = languages.get(lang, TextLMap({}, {}))
            comps = dict(base.components)
            comps[c.id] = dict(c.text)
            languages[lang] = TextLMap(base.texts, comps)
    return TextMap(languages) if languages else None


def assemble(
    *,
    sequence_number: int,
    components: tuple[ComponentIdentifier, ...],
    shared_sequence: CommandSequence | None,
    sequences: Mapping[int, CommandSequence],
    text: TextMap | None = None,
    reference_uri: str | None = None,
    severable: frozenset[int] | set[int] = frozenset(),
    integrated_payloads: Mapping[str, bytes] | None = None,
    digest_algorithm: int = CoseAlgorithm.SHA_256,
    extensions: Mapping[int, Any] | None = None,
) -> Envelope:
    """Assemble manifest and envelope from compiled parts; members listed in ``severable``
    move to the envelope and the manifest keeps their digests (§8.5)."""
    severable_ok = {ManifestKey.PAYLOAD_FETCH, ManifestKey.INSTALL, ManifestKey.TEXT}
    bad = set(severable) - severable_ok
    if bad:
        names = ", ".join(ManifestKey.name_of(k) or str(k) for k in sorted(bad))
        raise DescriptionError(f"{names} cannot be severed (only payload-fetch, install, text)")
    env_members: dict[int, SeverableMember] = {}
    kwargs: dict[str, Any] = {}
    attr: dict[int, str] = {
        ManifestKey.VALIDATE: "validate",
        ManifestKey.LOAD: "load",
        ManifestKey.INVOKE: "invoke",
        ManifestKey.PAYLOAD_FETCH: "payload_fetch",
        ManifestKey.INSTALL: "install",
        ManifestKey.UNINSTALL: "uninstall",
        ManifestKey.DEPENDENCY_RESOLUTION: "dependency_resolution",
        ManifestKey.CANDIDATE_VERIFICATION: "candidate_verification",
    }
    members: dict[int, SeverableMember] = dict(sequences)
    if text is not None:
        members[ManifestKey.TEXT] = text
    for key, member in members.items():
        if key in severable:
            # §8.5: the digest covers the whole bstr that holds the member in the envelope.
            from suitkit.format import cbor

            env_members[key] = member
            value: Any = Digest.compute(cbor.dumps(member.encoded), digest_algorithm)
        else:
            value = member
        if key == ManifestKey.TEXT:
            kwargs["text"] = value
        elif key in attr:
            kwargs[attr[key]] = value
        else:
            raise DescriptionError(f"unknown manifest member {key}")
    manifest = Manifest(
        sequence_number=sequence_number,
        common=Common(components=components, shared_sequence=shared_sequence),
        reference_uri=reference_uri,
        extensions=dict(extensions or {}),
        **kwargs,
    )
    return envelope_for(manifest, env_members, integrated_payloads or {}, digest_algorithm)


def envelope_for(
    manifest: Manifest,
    severable: Mapping[int, SeverableMember] | None = None,
    integrated_payloads: Mapping[str, bytes] | None = None,
    digest_algorithm: int = CoseAlgorithm.SHA_256,
) -> Envelope:
    """An unsigned envelope: the authentication wrapper holds only the manifest digest,
    computed over the bstr-wrapped manifest *with* its CBOR header (§8.3)."""
    from suitkit.format import cbor

    digest = Digest.compute(cbor.dumps(manifest.encoded), digest_algorithm)
    return Envelope(
        AuthenticationWrapper(digest),
        manifest,
        dict(severable or {}),
        dict(integrated_payloads or {}),
    )


# --- reading descriptions (YAML / JSON) ----------------------------------------------------------

_EXPLICIT_KEYS = {
    "shared-sequence",
    "validate",
    "load",
    "invoke",
    "install",
    "payload-fetch",
}

_MEMBER_KEYS = {
    "validate": ManifestKey.VALIDATE,
    "load": ManifestKey.LOAD,
    "invoke": ManifestKey.INVOKE,
    "payload-fetch": ManifestKey.PAYLOAD_FETCH,
    "install": ManifestKey.INSTALL,
    "text": ManifestKey.TEXT,
}


def load_description(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON manifest description."""
    import json

    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DescriptionError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            import yaml

            data = yaml.safe_load(raw)
    except (ValueError, Exception) as exc:  # yaml.YAMLError, json.JSONDecodeError
        raise DescriptionError(f"{path} is not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DescriptionError(f"{path}: a description is a mapping at its top level")
    return data


def build_from_description(desc: Mapping[str, Any], base_dir: Path | None = None) -> Envelope:
    """Compile a description (already loaded from YAML/JSON) into an unsigned envelope.

    A description that has any of ``shared-sequence``, ``validate``, ``install``... is in the
    explicit form; otherwise it is in the high-level form.
    """
    base = base_dir or Path.cwd()
    if _EXPLICIT_KEYS & set(desc):
        return _build_explicit(desc)
    return compile_manifest(_spec_from_description(desc, base))


def _severable(desc: Mapping[str, Any]) -> frozenset[int]:
    names = desc.get("severable", [])
    if isinstance(names, str):
        names = [names]
    out = set()
    for n in names:
        if n not in _MEMBER_KEYS:
            raise DescriptionError(f"unknown member {n!r}", "severable")
        out.add(int(_MEMBER_KEYS[n]))
    return frozenset(out)


def _sequence_number(desc: Mapping[str, Any]) -> int:
    for key in ("sequence-number", "manifest-sequence-number"):
        if key in desc:
            return to_uint(desc[key], key)
    raise DescriptionError("sequence-number is required (the anti-rollback counter, §8.4.2)")


def _spec_from_description(desc: Mapping[str, Any], base: Path) -> ManifestSpec:
    comps_desc = desc.get("components")
    if not isinstance(comps_desc, list) or not comps_desc:
        raise DescriptionError("components: a non-empty list is required")
    defaults = {
        k: desc[k] for k in ("vendor-id", "class-id", "vendor-domain", "class-info") if k in desc
    }
    specs: list[ComponentSpec] = []
    staging: list[ComponentSpec] = []
    for i, c in enumerate(comps_desc):
        merged = {**defaults, **c} if isinstance(c, dict) else c
        if isinstance(merged, dict) and "encryption" in merged:
            target, stage = _encrypted_component(i, merged, base, len(comps_desc) + len(staging))
            specs.append(target)
            if stage is not None:
                staging.append(stage)
        else:
            specs.append(_component(i, merged, base))
    comps = tuple(specs + staging)
    policy = desc.get("reporting-policy", {})
    return ManifestSpec(
        sequence_number=_sequence_number(desc),
        components=comps,
        reference_uri=desc.get("reference-uri"),
        severable=_severable(desc),
        text=_texts(desc.get("text", {}), "text", TextKey),
        condition_policy=to_uint(
            policy.get("conditions", DEFAULT_CONDITION_POLICY), "reporting-policy"
        ),
        directive_policy=to_uint(
            policy.get("directives", DEFAULT_DIRECTIVE_POLICY), "reporting-policy"
        ),
        slot_policy=to_uint(policy.get("component-slot", DEFAULT_SLOT_POLICY), "reporting-policy"),
    )


def _texts(value: Any, where: str, keys: type[TextKey] | type[TextComponentKey]) -> dict[Any, Any]:
    """Text for the manifest (``{lang: {name: text}}``) or for a component (``{name: text}``)."""
    if not isinstance(value, dict):
        raise DescriptionError("text is a mapping", where)
    if keys is TextKey:
        # manifest level: language tag -> {key: text}; a flat map means en-US
        if value and all(not isinstance(v, dict) for v in value.values()):
            value = {"en-US": value}
        return {lang: _text_keys(v, f"{where}/{lang}", TextKey) for lang, v in value.items()}
    return _text_keys(value, where, keys)


def _text_keys(
    value: Any, where: str, keys: type[TextKey] | type[TextComponentKey]
) -> dict[int, str]:
    if not isinstance(value, dict):
        raise DescriptionError("text is a mapping of name: text", where)
    out: dict[int, str] = {}
    for k, v in value.items():
        try:
            code = int(k) if isinstance(k, int) else int(keys[str(k).upper().replace("-", "_")])
        except KeyError:
            raise DescriptionError(f"unknown text key {k!r}", where) from None
        out[code] = str(v)
    return out


def _component(i: int, c: Any, base: Path) -> ComponentSpec:
    where = f"components[{i}]"
    if not isinstance(c, dict):
        raise DescriptionError("each component is a mapping", where)
    cid = component_id(c.get("id", [f"h'{i:02x}'"]), f"{where}/id")
    vendor = None
    if "vendor-id" in c:
        vendor = to_uuid(c["vendor-id"], f"{where}/vendor-id")
    elif "vendor-domain" in c:
        vendor = vendor_id_from_domain(str(c["vendor-domain"]))
    klass = None
    if "class-id" in c:
        klass = to_uuid(c["class-id"], f"{where}/class-id")
    elif "class-info" in c:
        if vendor is None:
            raise DescriptionError(
                "class-info needs a vendor id (UUID5 of the vendor, §8.4.8.1)", where
            )
        klass = class_id_from_info(vendor, str(c["class-info"]))
    alg = digest_algorithm(c.get("digest-algorithm", "sha256"), where)
    digest, size = None, None
    integrated = None
    if "payload" in c:
        path = (base / str(c["payload"])).resolve()
        digest, size = file_digest(path, alg, where)
        if c.get("integrated"):
            key = c.get("integrated") if isinstance(c.get("integrated"), str) else f"#{path.name}"
            integrated = (str(key), path.read_bytes())
    if "digest" in c:
        digest = to_digest(c["digest"], f"{where}/digest")
    if "size" in c:
        size = to_uint(c["size"], f"{where}/size")
    uri = c.get("uri")
    if integrated is not None and uri is None:
        uri = integrated[0]
    slots = tuple(
        SlotImage(
            slot=to_uint(s.get("slot", j), f"{where}/slots[{j}]"),
            digest=_slot_digest(s, base, alg, f"{where}/slots[{j}]")[0],
            size=_slot_digest(s, base, alg, f"{where}/slots[{j}]")[1],
            uri=s.get("uri"),
        )
        for j, s in enumerate(c.get("slots", []))
    )
    content = to_bytes(c["content"], f"{where}/content") if "content" in c else None
    if content is not None and digest is None:
        digest = Digest.compute(content, alg)
        size = len(content)
    return ComponentSpec(
        id=cid,
        vendor_id=vendor,
        class_id=klass,
        digest=digest,
        size=size,
        uri=uri,
        fetch_in=str(c.get("fetch-in", "install")),
        install_from=c.get("install-from"),
        content=content,
        slots=slots,
        load_from=c.get("load-from"),
        validate=bool(c.get("validate", True)),
        invoke=bool(c.get("invoke", False)),
        invoke_args=to_bytes(c["invoke-args"], where) if "invoke-args" in c else None,
        text=_text_keys(c.get("text", {}), f"{where}/text", TextComponentKey),
        integrated=integrated,
    )


def _encrypted_component(
    i: int, c: dict[str, Any], base: Path, staging_index: int
) -> tuple[ComponentSpec, ComponentSpec | None]:
    """A component whose payload is encrypted (draft-ietf-suit-firmware-encryption §3, §6).

    With a ``uri`` (or ``integrated``), the ciphertext is fetched into a staging component in
    payload-fetch and image-matched there before decryption; install then copies it into the
    target, decrypting, and image-matches the plaintext. Without one, the ciphertext is the
    content of a write that decrypts into the target (the write form). The staging component
    comes after every component of the description.
    """
    from suitkit.encryption.builder import encrypt_component, staging_component_id

    where = f"components[{i}]"
    alg = digest_algorithm(c.get("digest-algorithm", "sha256"), where)
    enc = encrypt_component(c, base, where, digest_algorithm=alg)
    plain = {k: v for k, v in c.items() if k not in ("encryption", "payload", "uri", "integrated")}
    spec = _component(i, plain, base)
    spec = dataclasses.replace(
        spec,
        digest=enc.plaintext_digest,
        size=enc.plaintext_size,
        uri=None,
        encryption_info=enc.encryption_info,
    )
    if "uri" not in c and not c.get("integrated"):
        return dataclasses.replace(spec, content=enc.ciphertext_bytes()), None
    integrated = None
    uri = c.get("uri")
    if c.get("integrated"):
        key = (
            c["integrated"]
            if isinstance(c["integrated"], str)
            else f"#{Path(str(c['payload'])).name}.enc"
        )
        integrated = (str(key), enc.ciphertext_bytes())
        uri = uri or key
    stage = ComponentSpec(
        id=staging_component_id(spec.id, enc),
        digest=enc.ciphertext_digest,
        size=enc.ciphertext_size,
        uri=str(uri),
        fetch_in="payload-fetch",
        validate=False,
        integrated=integrated,
    )
    return dataclasses.replace(spec, install_from=staging_index), stage


def _slot_digest(s: Any, base: Path, alg: int, where: str) -> tuple[Digest, int]:
    if not isinstance(s, dict):
        raise DescriptionError("a slot is a mapping", where)
    if "payload" in s:
        return file_digest((base / str(s["payload"])).resolve(), alg, where)
    if "digest" not in s or "size" not in s:
        raise DescriptionError("a slot needs a payload file, or digest and size", where)
    return to_digest(s["digest"], where), to_uint(s["size"], where)


def file_digest(path: Path, algorithm: int, where: str = "") -> tuple[Digest, int]:
    """Digest and size of a payload file, read in chunks (the file is never held whole)."""
    h = Digest(algorithm, b"").hasher()
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise DescriptionError(f"cannot read payload {path}: {exc.strerror}", where) from None
    return Digest(algorithm, h.digest()), size


# --- the explicit form -------------------------------------------------------------------------


def _build_explicit(desc: Mapping[str, Any]) -> Envelope:
    comps = desc.get("components")
    if not isinstance(comps, list) or not comps:
        raise DescriptionError("components: a non-empty list of component ids is required")
    components = tuple(component_id(c, f"components[{i}]") for i, c in enumerate(comps))
    shared = None
    if "shared-sequence" in desc:
        shared = parse_sequence(desc["shared-sequence"], "shared-sequence")
    sequences: dict[int, CommandSequence] = {}
    for name, key in _MEMBER_KEYS.items():
        if name in desc and name != "text":
            sequences[key] = parse_sequence(desc[name], name)
    text = None
    if "text" in desc:
        text = _explicit_text(desc["text"])
    payloads = {
        str(k): to_bytes(v, f"integrated-payloads/{k}")
        for k, v in desc.get("integrated-payloads", {}).items()
    }
    return assemble(
        sequence_number=_sequence_number(desc),
        components=components,
        shared_sequence=shared,
        sequences=sequences,
        text=text,
        reference_uri=desc.get("reference-uri"),
        severable=_severable(desc),
        integrated_payloads=payloads,
    )


def _explicit_text(value: Any) -> TextMap:
    if not isinstance(value, dict):
        raise DescriptionError("text is a mapping of language tag to texts", "text")
    languages: dict[str, TextLMap] = {}
    for lang, entries in value.items():
        where = f"text/{lang}"
        if not isinstance(entries, dict):
            raise DescriptionError("a language's text is a mapping", where)
        texts: dict[int, str] = {}
        comps: dict[ComponentIdentifier, dict[int, str]] = {}
        for k, v in entries.items():
            if k == "components":
                for cid_text, ctexts in v.items():
                    cid = component_id(_component_key(cid_text), f"{where}/components")
                    comps[cid] = _text_keys(ctexts, f"{where}/components", TextComponentKey)
            else:
                texts.update(_text_keys({k: v}, where, TextKey))
        languages[str(lang)] = TextLMap(texts, comps)
    return TextMap(languages)


def _component_key(text: Any) -> Any:
    """Component ids as text-map keys: ``"h'00'"`` or ``"[h'00', h'01']"`` or a list."""
    if isinstance(text, str) and text.startswith("[") and text.endswith("]"):
        return [p.strip() for p in text[1:-1].split(",") if p.strip()]
    return text


def _command_code(name: Any, where: str) -> int:
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    key = str(name).lower().removeprefix("suit-")
    if key.startswith("custom(") and key.endswith(")"):
        try:
            return int(key[7:-1])
        except ValueError:
            raise DescriptionError(f"bad custom command {name!r}", where) from None
    for prefix in ("condition-", "directive-"):
        key = key.removeprefix(prefix)
    try:
        return int(Command[key.upper().replace("-", "_")])
    except KeyError:
        raise DescriptionError(f"unknown command {name!r}", where) from None


def parse_sequence(value: Any, where: str) -> CommandSequence:
    """An explicit command sequence: a list of ``{command-name: argument}`` entries."""
    if not isinstance(value, list) or not value:
        raise DescriptionError("a command sequence is a non-empty list of commands", where)
    return CommandSequence([_parse_command(e, f"{where}[{i}]") for i, e in enumerate(value)])


def _parse_command(entry: Any, where: str) -> SuitCommand:
    if isinstance(entry, dict) and len(entry) == 1:
        name, arg = next(iter(entry.items()))
    elif isinstance(entry, list | tuple) and len(entry) == 2:
        name, arg = entry
    elif isinstance(entry, str):
        name, arg = entry, None
    else:
        raise DescriptionError("a command is {name: argument}", where)
    code = _command_code(name, where)
    if code == Command.SET_COMPONENT_INDEX:
        if arg is True:
            return SetComponentIndex(True)
        if isinstance(arg, list):
            return SetComponentIndex(tuple(to_uint(a, where) for a in arg))
        return SetComponentIndex(to_uint(arg, where))
    if code in (Command.OVERRIDE_PARAMETERS, Command.SET_PARAMETERS):
        if not isinstance(arg, dict) or not arg:
            raise DescriptionError("parameters are a non-empty mapping", where)
        params: dict[int, Any] = {}
        for pname, pval in arg.items():
            pcode = parameter_code(pname, where)
            params[pcode] = parameter_value(pcode, pval, f"{where}/{pname}")
        cls = OverrideParameters if code == Command.OVERRIDE_PARAMETERS else SetParameters
        return cls(Parameters(params))
    if code == Command.TRY_EACH:
        if not isinstance(arg, list):
            raise DescriptionError("try-each takes a list of command sequences", where)
        nil = bool(arg) and arg[-1] is None
        seqs = arg[:-1] if nil else arg
        if len(seqs) < 2:
            raise DescriptionError("try-each needs at least two sequences", where)
        return TryEach(
            tuple(parse_sequence(s, f"{where}/try-each[{j}]") for j, s in enumerate(seqs)), nil
        )
    if code == Command.RUN_SEQUENCE:
        return RunSequence(parse_sequence(arg, f"{where}/run-sequence"))
    if code < 0:
        if isinstance(arg, str) and arg.startswith("h'"):
            arg = to_bytes(arg, where)
        return CustomCommand(code, arg)
    try:
        is_condition = Command(code).is_condition
    except ValueError:
        is_condition = False
    if arg is None:
        arg = DEFAULT_CONDITION_POLICY if is_condition else DEFAULT_DIRECTIVE_POLICY
    return policy_command(code, to_uint(arg, where))
