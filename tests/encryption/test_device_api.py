"""The streaming API the device processor calls during copy/write (decrypt.py): lazy key
unwrap, staging of AEAD output, constant memory, closing the source."""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import Iterator

import pytest

from suitkit.cose import CoseKey
from suitkit.encryption import NoDecryptionKeyError, decrypt_chunks, encrypt_payload
from suitkit.encryption.decrypt import decrypt_to, open_decryptor, read_chunks
from suitkit.errors import AuthenticationError
from suitkit.format.codepoints import CoseAlgorithm
from suitkit.format.parameters import EncryptionInfo

from ._util import StagedComponent, chunked

A = CoseAlgorithm
KEK = CoseKey.generate(A.A128KW, b"device")


class Source:
    """A chunk source that records how far it was read and whether it was closed."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.read = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.read >= len(self.chunks):
            raise StopIteration
        self.read += 1
        return self.chunks[self.read - 1]

    def close(self) -> None:
        self.closed = True


def test_nothing_runs_until_the_first_next_and_a_missing_key_fails_before_reading() -> None:
    ct, info = encrypt_payload(os.urandom(100), A.A128CTR, [KEK])
    src = Source(chunked(ct, 10))
    other = CoseKey.generate(A.A128KW, b"other")
    gen = decrypt_chunks(info, [other], src)  # a generator: no work yet
    assert src.read == 0
    with pytest.raises(NoDecryptionKeyError):
        next(gen)
    assert src.read == 0  # the destination would not have been erased


def test_ctr_output_follows_input_chunk_by_chunk() -> None:
    payload = os.urandom(100)
    ct, info = encrypt_payload(payload, A.A128CTR, [KEK])
    src = Source(chunked(ct, 10))
    gen = decrypt_chunks(EncryptionInfo(info), [KEK], src)
    first = next(gen)
    assert first == payload[:10] and src.read == 1


def test_gcm_holds_back_sixteen_bytes_until_finalize() -> None:
    payload = os.urandom(100)
    ct, info = encrypt_payload(payload, A.A128GCM, [KEK])
    dec = open_decryptor(info, [KEK])
    out = dec.update(ct[:50])
    assert out == payload[:34]  # 16 bytes held back: they might be the tag
    out += dec.update(ct[50:])
    assert out == payload  # the whole plaintext, tag not checked yet
    assert dec.finalize() == b""


@pytest.mark.parametrize("alg", [A.A128GCM, A.CHACHA20_POLY1305])
def test_staged_store_commits_only_authenticated_plaintext(alg: CoseAlgorithm) -> None:
    """The processor's store loop: stage every chunk, commit after the iterator ends."""
    payload = os.urandom(5000)
    ct, info = encrypt_payload(payload, alg, [KEK])
    comp = StagedComponent()
    comp.store(decrypt_chunks(info, [KEK], chunked(ct, 512)))
    assert comp.content == payload
    bad = bytearray(ct)
    bad[-1] ^= 0x80
    src = Source(chunked(bytes(bad), 512))
    with pytest.raises(AuthenticationError):
        comp.store(decrypt_chunks(info, [KEK], src))
    assert comp.content is None and comp.aborted == 1  # nothing unauthenticated stays
    assert src.closed


def test_closing_the_generator_closes_the_source() -> None:
    ct, info = encrypt_payload(os.urandom(100), A.A128CTR, [KEK])
    src = Source(chunked(ct, 10))
    gen = decrypt_chunks(info, [KEK], src)
    next(gen)
    gen.close()
    assert src.closed


def test_decrypt_to_and_read_chunks() -> None:
    payload = os.urandom(3000)
    ct, info = encrypt_payload(payload, A.A256GCM, [KEK])
    sink = io.BytesIO()
    assert decrypt_to(info, [KEK], read_chunks(io.BytesIO(ct), 100), sink) == 3000
    assert sink.getvalue() == payload
    same_kid_other_key = CoseKey.generate(A.A128KW, b"device")
    with pytest.raises(AuthenticationError, match="does not unwrap"):
        decrypt_to(info, [same_kid_other_key], [ct], io.BytesIO())


@pytest.mark.parametrize("alg", [A.A128CTR, A.A128GCM, A.CHACHA20_POLY1305])
def test_memory_stays_flat_in_payload_size(alg: CoseAlgorithm) -> None:
    """Decrypting 16 MiB peaks at about two chunks, not at the payload size."""
    chunk = 256 * 1024
    block = os.urandom(chunk)
    enc_ct, info = encrypt_payload(block * 4, alg, [KEK])  # only to get an info
    del enc_ct

    def peak(total: int) -> int:
        def chunks() -> Iterator[bytes]:
            for _ in range(total // chunk):
                yield block  # garbage ciphertext: fine for CTR; AEAD fails only at the end

        tracemalloc.start()
        try:
            for _ in decrypt_chunks(info, [KEK], chunks()):
                pass
        except AuthenticationError:
            assert alg is not A.A128CTR
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, big = peak(1 << 20), peak(16 << 20)
    assert big < 4 * chunk and big < small + chunk


def test_check_supported_is_a_keyless_preflight() -> None:
    from suitkit.encryption.decrypt import check_supported
    from suitkit.errors import AlgorithmUnsupportedError
    from suitkit.format import cbor

    _, info = encrypt_payload(b"fw", A.A128GCM, [KEK])
    assert check_supported(EncryptionInfo(info)).alg is A.A128GCM
    body = list(cbor.loads(info).value)
    body[3][0][1][1] = -6  # direct
    with pytest.raises(AlgorithmUnsupportedError, match="no COSE_recipient"):
        check_supported(cbor.dumps(cbor.CBORTag(96, body)))
    body = list(cbor.loads(info).value)
    body[0] = cbor.dumps({1: 30})  # AES-CCM-16-128-128
    with pytest.raises(AlgorithmUnsupportedError, match="not supported"):
        check_supported(cbor.dumps(cbor.CBORTag(96, body)))
