"""Checking a release upload before anything of it is stored.

An upload is an envelope, the severable members that were severed from it, and payloads. It
is accepted only if:

1. the envelope authenticates under one of the configured author trust anchors
   (:func:`suitkit.format.authentication.authenticate`: digest, at least one signature or MAC
   by a trusted key, every present or supplied severable member matching its digest);
2. every payload matches an image the manifest fetches: the image whose URI's last path
   segment is the payload's file name (or the URI / component index the upload maps it to),
   with the image-digest and image-size the manifest gives for it;
3. file names are plain names (letters, digits, ``.``, ``_``, ``-``; not starting with a dot).

Everything is staged in temporary files first (:class:`~suitkit.server.storage.Staged`); the
caller commits the blobs and the database rows only when :func:`check_release` returns.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from suitkit.cose.keys import CoseKey
from suitkit.errors import SuitError
from suitkit.format.authentication import AuthenticatedEnvelope, authenticate, digest_of_wrapped
from suitkit.format.codepoints import ManifestKey
from suitkit.format.digest import Digest, Hasher
from suitkit.format.manifest import SEVERABLE_SEQUENCES
from suitkit.server.facts import Image, ManifestFacts, images_by_name, manifest_facts
from suitkit.server.models import Release, ReleaseComponent, ReleaseFile
from suitkit.server.storage import CHUNK, Staged

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class UploadRejected(Exception):
    """The upload is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = dict(detail or {})


def check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name) or ".." in name:
        raise UploadRejected(
            400,
            f"{what} name {name!r} is not a plain file name (letters, digits, '.', '_', '-', "
            "at most 128, not starting with a dot)",
        )
    return name


def digest_text(d: Digest) -> str:
    """``sha256:<hex>`` (the COSE algorithm name, then hex): how digests are written in the
    database and the APIs."""
    return f"{d.algorithm_name}:{d.value.hex()}"


@dataclass(frozen=True, slots=True)
class PayloadMatch:
    name: str
    staged: Staged
    image: Image


@dataclass(frozen=True, slots=True)
class MemberMatch:
    key: int
    staged: Staged

    @property
    def name(self) -> str:
        return ManifestKey(self.key).spec_name


@dataclass(frozen=True, slots=True)
class CheckedRelease:
    authenticated: AuthenticatedEnvelope
    facts: ManifestFacts
    members: tuple[MemberMatch, ...]
    payloads: tuple[PayloadMatch, ...]

    @property
    def manifest_digest(self) -> str:
        return digest_text(self.authenticated.result.digest)

    @property
    def missing_images(self) -> list[Image]:
        """Images fetched from a URI for which no payload was uploaded (devices fetch them
        elsewhere, or integrated ``#`` payloads)."""
        have = {(p.image.component_index, p.image.uri) for p in self.payloads}
        return [
            im
            for im in self.facts.images
            if (im.component_index, im.uri) not in have and not im.uri.startswith("#")
        ]


def _hash_file(staged: Staged, algorithm: int) -> bytes:
    h = Hasher(algorithm)
    with staged.open() as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.digest()


def _match_payload(
    name: str, staged: Staged, candidates: Sequence[Image], mapped: bool
) -> PayloadMatch:
    how = "mapped to" if mapped else "named like the last path segment of"
    if not candidates:
        raise UploadRejected(
            422,
            f"payload {name!r} matches no image the manifest fetches (no URI {how} it)",
            {"payload": name},
        )
    checkable = [im for im in candidates if im.digest is not None]
    if not checkable:
        raise UploadRejected(
            422,
            f"payload {name!r}: the manifest gives no image-digest for {candidates[0].uri}, "
            "so the payload cannot be checked",
            {"payload": name},
        )
    computed: dict[int, bytes] = {}
    for im in checkable:
        assert im.digest is not None
        if im.size is not None and im.size != staged.size:
            continue
        try:
            actual = computed.get(im.digest.algorithm)
            if actual is None:
                actual = computed[im.digest.algorithm] = _hash_file(staged, im.digest.algorithm)
        except SuitError:  # an unsupported digest algorithm
            continue
        if im.digest.matches(actual):
            return PayloadMatch(name, staged, im)
    expected = ", ".join(
        f"{digest_text(im.digest)} ({im.size if im.size is not None else '?'} bytes)"
        for im in checkable
        if im.digest is not None
    )
    raise UploadRejected(
        422,
        f"payload {name!r} ({staged.size} bytes) does not match the manifest's image-digest "
        f"and image-size for {candidates[0].uri}: expected {expected}",
        {"payload": name, "sha256": staged.sha256, "size": staged.size},
    )


def check_release(
    envelope: Staged,
    trusted_keys: Sequence[CoseKey],
    *,
    severed: Sequence[Staged] = (),
    payloads: Sequence[tuple[str, Staged]] = (),
    mapping: Mapping[str, str | int] | None = None,
) -> CheckedRelease:
    """Verify an upload (see the module doc); raises :class:`UploadRejected`."""
    if not trusted_keys:
        raise UploadRejected(
            503,
            "the server has no author trust anchor configured (--trust): it cannot accept "
            "any release",
        )
    members_bytes = [s.read() for s in severed]
    try:
        auth = authenticate(envelope.read(), trusted_keys, severed=members_bytes)
    except SuitError as exc:
        raise UploadRejected(422, f"the envelope is refused: {exc}", exc.describe()) from None
    manifest = auth.manifest
    members: list[MemberMatch] = []
    for staged, content in zip(severed, members_bytes, strict=True):
        for key in (*SEVERABLE_SEQUENCES, ManifestKey.TEXT):
            held = manifest.text if key == ManifestKey.TEXT else manifest.sequence(key)
            if isinstance(held, Digest) and digest_of_wrapped(held, content):
                members.append(MemberMatch(int(key), staged))
                break
    # the images a release has: from the members in the manifest, those the envelope still
    # carries, and those uploaded severed (each checked against its digest by authenticate)
    available = {
        int(k): auth.member(k) for k in SEVERABLE_SEQUENCES if auth.member(k) is not None
    }
    facts = manifest_facts(manifest, available)
    by_name = images_by_name(facts)
    mapping = dict(mapping or {})
    for name in mapping:
        if name not in {n for n, _ in payloads}:
            raise UploadRejected(400, f"the mapping names {name!r}, which was not uploaded")
    matches: list[PayloadMatch] = []
    seen: set[str] = set()
    for name, staged in payloads:
        check_name(name, "payload")
        if name in seen:
            raise UploadRejected(400, f"payload {name!r} was uploaded twice")
        seen.add(name)
        target = mapping.get(name)
        if target is None:
            candidates = by_name.get(name, [])
        elif isinstance(target, int):
            candidates = [im for im in facts.images if im.component_index == target]
        else:
            candidates = [im for im in facts.images if im.uri == target]
        matches.append(_match_payload(name, staged, candidates, target is not None))
    return CheckedRelease(auth, facts, tuple(members), tuple(matches))


def store_release(
    session: Session,
    checked: CheckedRelease,
    envelope: Staged,
    *,
    name: str | None,
    notes: str | None,
    created_by: int | None,
    now: dt.datetime,
) -> Release:
    """Commit the staged blobs and write the release rows (in the caller's transaction: if
    it fails, the blobs stay as unreferenced content, harmless and reusable)."""
    from suitkit.cli.show import envelope_json

    auth = checked.authenticated
    facts = checked.facts
    env_blob = envelope.commit()
    for m in checked.members:
        m.staged.commit()
    for p in checked.payloads:
        p.staged.commit()
    release = Release(
        name=name or f"sequence {facts.sequence_number}",
        notes=notes,
        manifest_digest=checked.manifest_digest,
        sequence_number=facts.sequence_number,
        reference_uri=facts.reference_uri,
        envelope_sha256=env_blob.sha256,
        envelope_size=env_blob.size,
        show_json=json.dumps(envelope_json(auth.envelope)),
        signers=json.dumps([b.to_json() for b in auth.result.blocks]),
        facts=json.dumps(
            {
                "images": [
                    {
                        "component-index": im.component_index,
                        "uri": im.uri,
                        "digest": digest_text(im.digest) if im.digest else None,
                        "size": im.size,
                    }
                    for im in facts.images
                ],
                "missing-payloads": sorted({im.uri for im in checked.missing_images}),
            }
        ),
        created_at=now,
        created_by=created_by,
    )
    session.add(release)
    session.flush()
    for c in facts.components:
        session.add(
            ReleaseComponent(
                release_id=release.id,
                index=c.index,
                component=c.text,
                vendor_id=min(c.vendor_ids) if len(c.vendor_ids) == 1 else None,
                class_id=min(c.class_ids) if len(c.class_ids) == 1 else None,
            )
        )
    session.add(
        ReleaseFile(
            release_id=release.id,
            kind="envelope",
            name="envelope",
            sha256=env_blob.sha256,
            size=env_blob.size,
        )
    )
    for m in checked.members:
        session.add(
            ReleaseFile(
                release_id=release.id,
                kind="member",
                name=m.name,
                sha256=m.staged.sha256,
                size=m.staged.size,
            )
        )
    for p in checked.payloads:
        session.add(
            ReleaseFile(
                release_id=release.id,
                kind="payload",
                name=p.name,
                uri=p.image.uri,
                component_index=p.image.component_index,
                sha256=p.staged.sha256,
                size=p.staged.size,
            )
        )
    session.flush()
    return release
