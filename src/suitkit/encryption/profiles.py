"""The mandatory-to-implement algorithm profiles of draft-ietf-suit-mti (§3, IANA §6).

Each profile names one digest, one authentication, one key exchange and one content encryption
algorithm (its "descriptor array", e.g. ``[-16, -9, -29, -65534]``). A recipient implementing a
profile accepts a manifest only when everything in it uses that profile's algorithms
(draft-ietf-suit-mti §5.2: "they either accept or reject a manifest based on the algorithm profile
it uses"); :func:`check_envelope` is that check, :func:`check_build` the author's.

What is checked, and where an algorithm shows up:

* digest: the SUIT_Digest of the authentication wrapper, every image-digest parameter (in the
  shared sequence and in every command sequence present, try-each and run-sequence included),
  and the digests of severed members;
* authentication: every COSE_Sign1 / COSE_Mac0 block, and every signature of a COSE_Sign / the
  MAC of a COSE_Mac;
* key exchange: every COSE_recipient of every encryption-info parameter;
* encryption: the content algorithm of every encryption-info parameter.

The profiles do not name ECDH curves. suitkit generates P-256 recipient keys for the ESP256
profiles and X25519 for the Ed25519 ones (:attr:`Profile.ecdh_curve`), but does not reject other
curves. ES256 (-7) and EdDSA (-8) are the polymorphic forms of ESP256 and Ed25519 with the same
keys; they are outside the profiles' descriptor arrays and only accepted with
``allow_equivalent=True`` (the manifest draft's own examples sign with ES256, see
shared/spec/README.md). Integrated dependency envelopes are checked when they are processed, not
as part of the envelope that carries them. A severable member that is severed and was not
supplied cannot be checked (only its digest's algorithm is).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from suitkit.cose import messages as cose
from suitkit.cose.algorithms import Signer, default_algorithm
from suitkit.cose.keys import CoseKey
from suitkit.encryption.cose_encrypt import CoseEncrypt
from suitkit.encryption.recipients import Recipient
from suitkit.errors import AlgorithmUnsupportedError
from suitkit.format.authentication import AuthenticatedEnvelope
from suitkit.format.codepoints import CoseAlgorithm, CoseCurve, ManifestKey, Parameter
from suitkit.format.commands import (
    CommandSequence,
    OverrideParameters,
    RunSequence,
    SetParameters,
    TryEach,
)
from suitkit.format.digest import Digest
from suitkit.format.envelope import Envelope
from suitkit.format.manifest import Manifest
from suitkit.format.parameters import EncryptionInfo

__all__ = [
    "PROFILES",
    "Profile",
    "check_build",
    "check_encryption_info",
    "check_envelope",
    "get_profile",
]

_A = CoseAlgorithm


@dataclass(frozen=True, slots=True)
class Profile:
    """One COSE SUIT Algorithm Profile (draft-ietf-suit-mti §3, §6)."""

    name: str
    digest: CoseAlgorithm
    authentication: CoseAlgorithm
    key_exchange: CoseAlgorithm
    encryption: CoseAlgorithm
    #: the curve suitkit uses for ECDH-ES recipient keys in this profile (None: AES-KW)
    ecdh_curve: CoseCurve | None = None
    status: str = "MANDATORY"

    @property
    def descriptor(self) -> tuple[int, int, int, int]:
        """The Descriptor Array of the IANA registry, e.g. ``(-16, 5, -3, -65534)``."""
        return (
            int(self.digest),
            int(self.authentication),
            int(self.key_exchange),
            int(self.encryption),
        )

    def authentication_algorithms(self, allow_equivalent: bool = False) -> frozenset[int]:
        """The authentication algorithms accepted (with their polymorphic forms on request)."""
        algs = {int(self.authentication)}
        if allow_equivalent:
            algs |= {int(a) for a in _EQUIVALENT.get(self.authentication, ())}
        return frozenset(algs)


_EQUIVALENT: Final = {_A.ESP256: (_A.ES256,), _A.ED25519: (_A.EDDSA,)}

#: The six profiles, by name.
PROFILES: Final[Mapping[str, Profile]] = MappingProxyType(
    {
        p.name: p
        for p in (
            Profile(
                "suit-sha256-hmac-a128kw-a128ctr",
                _A.SHA_256,
                _A.HMAC_256_256,
                _A.A128KW,
                _A.A128CTR,
            ),
            Profile(
                "suit-sha256-esp256-ecdh-a128ctr",
                _A.SHA_256,
                _A.ESP256,
                _A.ECDH_ES_A128KW,
                _A.A128CTR,
                CoseCurve.P_256,
            ),
            Profile(
                "suit-sha256-ed25519-ecdh-a128ctr",
                _A.SHA_256,
                _A.ED25519,
                _A.ECDH_ES_A128KW,
                _A.A128CTR,
                CoseCurve.X25519,
            ),
            Profile(
                "suit-sha256-esp256-ecdh-a128gcm",
                _A.SHA_256,
                _A.ESP256,
                _A.ECDH_ES_A128KW,
                _A.A128GCM,
                CoseCurve.P_256,
            ),
            Profile(
                "suit-sha256-ed25519-ecdh-chacha-poly",
                _A.SHA_256,
                _A.ED25519,
                _A.ECDH_ES_A128KW,
                _A.CHACHA20_POLY1305,
                CoseCurve.X25519,
            ),
            Profile(
                "suit-sha256-hsslms-a256kw-a256ctr",
                _A.SHA_256,
                _A.HSS_LMS,
                _A.A256KW,
                _A.A256CTR,
            ),
        )
    }
)


def get_profile(name: str | Profile) -> Profile:
    """A profile by name (AlgorithmUnsupportedError for a name that is not one of the six)."""
    if isinstance(name, Profile):
        return name
    p = PROFILES.get(name.strip().lower())
    if p is None:
        raise AlgorithmUnsupportedError(
            f"unknown algorithm profile {name!r}; one of: {', '.join(PROFILES)}"
        )
    return p


def _name(alg: Any) -> str:
    try:
        return CoseAlgorithm(alg).spec_name
    except (ValueError, TypeError):
        return repr(alg)


def _outside(profile: Profile, what: str, alg: Any, want: Any, path: str | None) -> None:
    raise AlgorithmUnsupportedError(
        f"{what} {_name(alg)} is outside profile {profile.name} (which uses {_name(want)})",
        path=path,
    )


# --- pieces ----------------------------------------------------------------------------------


def check_encryption_info(
    info: EncryptionInfo | CoseEncrypt | bytes, profile: str | Profile, *, path: str | None = None
) -> None:
    """The content algorithm and every recipient's key exchange algorithm must be the
    profile's (AlgorithmUnsupportedError otherwise, also for an algorithm suitkit lacks)."""
    p = get_profile(profile)
    if isinstance(info, CoseEncrypt):
        enc = info
    else:
        raw = info.encoded if isinstance(info, EncryptionInfo) else bytes(info)
        enc = CoseEncrypt.decode(raw, path=path)
    alg = enc.alg
    if alg is not p.encryption:
        _outside(p, "content encryption", alg, p.encryption, path)
    for rec in enc.recipients:
        ralg = rec.alg
        if ralg is not p.key_exchange:
            _outside(p, f"key exchange of recipient {rec.index}", ralg, p.key_exchange, path)


def _check_digest(p: Profile, d: Digest, what: str, path: str | None) -> None:
    if d.algorithm != p.digest:
        _outside(p, f"{what} digest", d.algorithm, p.digest, path)


def _walk(seq: CommandSequence) -> Iterator[tuple[int, Any]]:
    """Every (parameter code, value) set anywhere in ``seq``, nested sequences included."""
    for cmd in seq:
        if isinstance(cmd, OverrideParameters | SetParameters):
            yield from cmd.parameters.items()
        elif isinstance(cmd, TryEach):
            for s in cmd.sequences:
                yield from _walk(s)
        elif isinstance(cmd, RunSequence):
            yield from _walk(cmd.sequence)


def _check_sequence(p: Profile, seq: CommandSequence, where: str) -> None:
    for code, value in _walk(seq):
        if code == Parameter.IMAGE_DIGEST and isinstance(value, Digest):
            _check_digest(p, value, "image-digest", where)
        elif code == Parameter.ENCRYPTION_INFO and isinstance(value, EncryptionInfo):
            check_encryption_info(value, p, path=where)


_MEMBERS: Final = tuple(
    (k, k.spec_name)
    for k in (
        ManifestKey.VALIDATE,
        ManifestKey.LOAD,
        ManifestKey.INVOKE,
        ManifestKey.DEPENDENCY_RESOLUTION,
        ManifestKey.PAYLOAD_FETCH,
        ManifestKey.CANDIDATE_VERIFICATION,
        ManifestKey.INSTALL,
        ManifestKey.UNINSTALL,
    )
)


def _check_manifest(p: Profile, manifest: Manifest, members: Mapping[int, CommandSequence]) -> None:
    shared = manifest.common.shared_sequence
    if shared is not None:
        _check_sequence(p, shared, "manifest/common/shared-sequence")
    for key, name in _MEMBERS:
        held = manifest.sequence(key)
        where = f"manifest/{name}"
        if isinstance(held, Digest):
            _check_digest(p, held, f"severed {name}", where)
            seq = members.get(key)
            if seq is not None:
                _check_sequence(p, seq, where)
        elif held is not None:
            _check_sequence(p, held, where)
    if isinstance(manifest.text, Digest):
        _check_digest(p, manifest.text, "severed text", "manifest/text")


def _check_blocks(p: Profile, blocks: Iterable[bytes], allow_equivalent: bool) -> None:
    accepted = p.authentication_algorithms(allow_equivalent)
    for i, block in enumerate(blocks, start=1):
        where = f"envelope/authentication-wrapper[{i}]"
        msg = cose.decode(block, path=where)
        headers = (
            [s.headers for s in msg.signatures] if isinstance(msg, cose.CoseSign) else [msg.headers]
        )
        for h in headers:
            alg = h.alg_value
            if alg not in accepted:
                _outside(p, "authentication", alg, p.authentication, where)


def _severable_members(envelope: Envelope) -> dict[int, CommandSequence]:
    return {k: v for k, v in envelope.severable.items() if isinstance(v, CommandSequence)}


# --- the checks ------------------------------------------------------------------------------


def check_envelope(
    authenticated: AuthenticatedEnvelope,
    profile: str | Profile,
    *,
    allow_equivalent: bool = False,
) -> None:
    """Reject (AlgorithmUnsupportedError, report reason alg-unsupported) an authenticated
    envelope that uses any algorithm outside ``profile`` (see the module doc for what is
    checked). Returns None when everything is inside."""
    p = get_profile(profile)
    env = authenticated.envelope
    _check_digest(p, env.authentication.digest, "manifest", "envelope/authentication-wrapper")
    _check_blocks(p, env.authentication.blocks, allow_equivalent)
    members: dict[int, CommandSequence] = {}
    for key, _ in _MEMBERS:
        m = authenticated.member(key)
        if isinstance(m, CommandSequence):
            members[key] = m
    _check_manifest(p, env.manifest, members)


def _signer_algorithm(s: Any) -> CoseAlgorithm:
    if isinstance(s, CoseKey):
        return default_algorithm(s)
    if isinstance(s, Signer):
        return s.alg
    key = getattr(s, "key", None)  # suitkit.author.signing.MacKey
    if isinstance(key, CoseKey):
        return default_algorithm(key)
    raise TypeError(f"cannot tell the algorithm of signer {s!r}")


def check_build(
    profile: str | Profile,
    *,
    envelope: Envelope | None = None,
    signers: Iterable[Any] = (),
    content_algorithm: CoseAlgorithm | int | None = None,
    recipients: Iterable[Recipient | CoseKey] = (),
    digest_algorithm: int | None = None,
    allow_equivalent: bool = False,
) -> None:
    """The author's check, before signing: an (unsigned or signed) ``envelope`` built for the
    profile, the ``signers`` about to sign it (Signer, CoseKey or MacKey), and the content
    algorithm / ``recipients`` an encryption is about to use. AlgorithmUnsupportedError for
    anything outside ``profile``."""
    p = get_profile(profile)
    if digest_algorithm is not None and digest_algorithm != p.digest:
        _outside(p, "digest", digest_algorithm, p.digest, None)
    if content_algorithm is not None and content_algorithm != p.encryption:
        _outside(p, "content encryption", content_algorithm, p.encryption, None)
    for r in recipients:
        rec = r if isinstance(r, Recipient) else Recipient(r)
        if rec.algorithm is not p.key_exchange:
            _outside(p, "key exchange", rec.algorithm, p.key_exchange, None)
    accepted = p.authentication_algorithms(allow_equivalent)
    for s in signers:
        alg = _signer_algorithm(s)
        if alg not in accepted:
            _outside(p, "authentication", alg, p.authentication, None)
    if envelope is not None:
        _check_digest(p, envelope.authentication.digest, "manifest", "envelope")
        _check_blocks(p, envelope.authentication.blocks, allow_equivalent)
        _check_manifest(p, envelope.manifest, _severable_members(envelope))
