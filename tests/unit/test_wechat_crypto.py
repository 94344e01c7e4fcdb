"""WeChat / WeCom crypto against Tencent's published WXBizMsgCrypt sample vectors, an
independent AES implementation (the openssl CLI) for our own ciphertexts, and every
way a payload can be damaged.

Vector sources (found in the public code index; the values are Tencent's, copied
unchanged in many repositories):

- WeCom, token "QDG6eK", EncodingAESKey "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
  CorpID "wx5823bf96d3bd56c7": the GET (msg_signature 5c45ff5e…, echostr P9nAzCzy…)
  and POST (477715d1…, Encrypt RypEvHKD…) examples in the docstrings of
  sbzhu/weworkapi_python callback/Sample.py, with token/key/id as in
  JeffreySu/WeiXinMPSDK src/Senparc.Weixin.MP/Senparc.Weixin.MP/Tencent/Sample.cs
  (Tencent's C# sample) and WeCom's doc page 90968 (加解密方案说明).
- WeCom, token "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo", CorpID "ww1436e0e65a779aee": the
  code of sbzhu/weworkapi_python callback/Sample.py (VerifyURL and DecryptMsg).
- Official Account, token "spamtest", EncodingAESKey
  "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", AppID "wx2c2769f8efd9abc2": Tencent's
  Python sample for the Official Account (Sample.py by jonyqin, 2014) as copied in
  charlesXu86/Chatbot_CN Chatbot_Web/impl/weixin/Sample.py. (The OA Python sample does
  not use "jWmYm7…" / "wx5823bf96d3bd56c7": that pair is the WeCom / C# sample's.)
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.wechat.crypto import (
    DECODE_BASE64_ERROR,
    DECRYPT_AES_ERROR,
    ILLEGAL_AES_KEY,
    ILLEGAL_BUFFER,
    VALIDATE_RECEIVE_ID_ERROR,
    VALIDATE_SIGNATURE_ERROR,
    CryptoError,
    MessageCrypto,
    decode_aes_key,
    pad,
    signature,
    signature_matches,
    unpad,
)

# --- WeCom sample (token QDG6eK) ---------------------------------------------------
WECOM_TOKEN = "QDG6eK"
WECOM_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
WECOM_CORP = "wx5823bf96d3bd56c7"
VERIFY = {
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "echostr": (
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
    ),
}
POST_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
POST_TIMESTAMP, POST_NONCE = "1409659813", "1372623149"
POST_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
    "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLj"
    "vd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMn"
    "vw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k"
    "22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoy"
    "yH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)
POST_PLAINTEXT = (
    b"<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
    b"<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    b"<CreateTime>1409659813</CreateTime>\n"
    b"<MsgType><![CDATA[text]]></MsgType>\n"
    b"<Content><![CDATA[hello]]></Content>\n"
    b"<MsgId>4561255354251345929</MsgId>\n"
    b"<AgentID>218</AgentID>\n"
    b"</xml>"
)

# --- WeCom sample (sbzhu/weworkapi_python callback/Sample.py, in code) ---------------
SBZHU = MessageCrypto(
    "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo",
    "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt",
    "ww1436e0e65a779aee",
)
SBZHU_ECHO = (
    "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="
)
SBZHU_ENCRYPT = (
    "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTk"
    "AgGzBhzTtRLNshw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJP"
    "QbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7Mhm"
    "EbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/"
    "oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+"
)

# --- Official Account Python sample (token spamtest) ---------------------------------
OA = MessageCrypto("spamtest", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx2c2769f8efd9abc2")
OA_TIMESTAMP, OA_NONCE = "1409735669", "1320562132"
OA_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
OA_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6"
    "F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T33"
    "2jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCg"
    "avjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6Oewp"
    "usjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)

WECOM = MessageCrypto(WECOM_TOKEN, WECOM_KEY, WECOM_CORP)


def _raw_plaintext(crypto: MessageCrypto, encrypted: str) -> bytes:
    """AES-CBC without any unpadding: what sits inside a ciphertext (test helper)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    decryptor = Cipher(algorithms.AES(crypto.key), modes.CBC(crypto.key[:16])).decryptor()
    return decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()


def _seal_raw(crypto: MessageCrypto, plain: bytes) -> str:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(crypto.key), modes.CBC(crypto.key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


# --- published vectors ---------------------------------------------------------------


def test_wecom_url_verification_vector_signs_and_decrypts() -> None:
    """The WeCom console GET: msg_signature covers echostr; it decrypts to the number."""
    assert (
        signature(WECOM_TOKEN, VERIFY["timestamp"], VERIFY["nonce"], VERIFY["echostr"])
        == (VERIFY["msg_signature"])
    )
    WECOM.verify(VERIFY["msg_signature"], VERIFY["timestamp"], VERIFY["nonce"], VERIFY["echostr"])
    assert WECOM.decrypt(VERIFY["echostr"]) == b"1616140317555161061"


def test_wecom_post_vector_signs_and_decrypts_with_a_30_byte_pad() -> None:
    """The sample POST: a pad value of 30, which a 16-byte PKCS#7 unpadder refuses."""
    WECOM.verify(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    assert _raw_plaintext(WECOM, POST_ENCRYPT)[-1] == 30
    assert WECOM.decrypt(POST_ENCRYPT) == POST_PLAINTEXT


def test_second_wecom_sample_verifies_and_decrypts() -> None:
    SBZHU.verify("012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "1476416373", "47744683", SBZHU_ECHO)
    assert SBZHU.decrypt(SBZHU_ECHO) == b"1288432023552776189"
    SBZHU.verify(
        "0c3914025cb4b4d68103f6bfc8db550f79dcf48e", "1476422779", "1597212914", SBZHU_ENCRYPT
    )
    plain = SBZHU.decrypt(SBZHU_ENCRYPT)
    assert _raw_plaintext(SBZHU, SBZHU_ENCRYPT)[-1] == 22
    assert "<Content>你好</Content>".encode() in plain
    assert plain.startswith(b"<xml><ToUserName>ww1436e0e65a779aee</ToUserName>")


def test_official_account_python_sample_vector() -> None:
    """The OA sample is compatible mode: msg_signature over the Encrypt; AppID inside."""
    OA.verify(OA_MSG_SIGNATURE, OA_TIMESTAMP, OA_NONCE, OA_ENCRYPT)
    plain = OA.decrypt(OA_ENCRYPT)
    assert b"<Content><![CDATA[abcdteT]]></Content>" in plain
    assert b"<MsgId>6054768590064713728</MsgId>" in plain


# --- our encrypt, checked by an independent implementation ------------------------------


def _openssl_decrypt(crypto: MessageCrypto, encrypted: str) -> bytes:
    result = subprocess.run(
        [
            "openssl",
            "enc",
            "-d",
            "-aes-256-cbc",
            "-nopad",
            "-K",
            crypto.key.hex(),
            "-iv",
            crypto.key[:16].hex(),
        ],
        input=base64.b64decode(encrypted),
        capture_output=True,
        check=True,
    )
    return result.stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
@pytest.mark.parametrize(
    "message", [b"x", "<xml><Content>转账失败</Content></xml>".encode(), b"a" * 300]
)
def test_our_ciphertext_follows_the_reference_recipe(message: bytes) -> None:
    """openssl (not the `cryptography` package) decrypts our output; the layout and the
    32-byte PKCS#7 padding are exactly Tencent's: random16 | len | msg | receive id | pad."""
    encrypted = WECOM.encrypt(message, random16=b"R" * 16)
    plain = _openssl_decrypt(WECOM, encrypted)
    assert len(plain) % 32 == 0
    n = plain[-1]
    assert 1 <= n <= 32 and plain[-n:] == bytes([n]) * n
    body = plain[:-n]
    assert body[:16] == b"R" * 16
    (length,) = struct.unpack(">I", body[16:20])
    assert body[20 : 20 + length] == message
    assert body[20 + length :] == WECOM_CORP.encode()


def test_openssl_agrees_with_the_published_vector() -> None:
    """The reference check itself is sound: openssl opens Tencent's own ciphertext."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    assert POST_PLAINTEXT in _openssl_decrypt(WECOM, POST_ENCRYPT)


@settings(max_examples=50, deadline=None)
@given(message=st.binary(max_size=3000))
def test_encrypt_then_decrypt_round_trips(message: bytes) -> None:
    assert WECOM.decrypt(WECOM.encrypt(message)) == message


def test_seal_signs_the_ciphertext() -> None:
    encrypted, msg_signature = WECOM.seal(b"<xml/>", "1700000000", "42")
    assert signature_matches(msg_signature, WECOM_TOKEN, "1700000000", "42", encrypted)


# --- damaged payloads --------------------------------------------------------------------


def _code(encrypted: str, crypto: MessageCrypto = WECOM) -> int:
    with pytest.raises(CryptoError) as info:
        crypto.decrypt(encrypted)
    return info.value.code


def test_wrong_receive_id_is_refused() -> None:
    other = MessageCrypto(WECOM_TOKEN, WECOM_KEY, "wwSomeoneElse")
    assert _code(POST_ENCRYPT, other) == VALIDATE_RECEIVE_ID_ERROR
    assert _code(OA.encrypt(b"<xml/>"), MessageCrypto("spamtest", OA_KEY, "wx0")) == (
        VALIDATE_RECEIVE_ID_ERROR
    )


OA_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def test_tampered_ciphertext_is_refused() -> None:
    """Flipping a byte of the last block ruins the padding (or, by chance, the id)."""
    sealed = bytearray(base64.b64decode(POST_ENCRYPT))
    sealed[-1] ^= 0x55
    code = _code(base64.b64encode(bytes(sealed)).decode())
    assert code in (DECRYPT_AES_ERROR, VALIDATE_RECEIVE_ID_ERROR, ILLEGAL_BUFFER)


def test_tampered_length_field_is_refused() -> None:
    """CBC: flipping ciphertext byte 0 flips plaintext byte 16, the top byte of the length."""
    sealed = bytearray(base64.b64decode(POST_ENCRYPT))
    sealed[0] ^= 0x01
    assert _code(base64.b64encode(bytes(sealed)).decode()) == ILLEGAL_BUFFER


def test_any_tampering_breaks_the_msg_signature() -> None:
    """AES-CBC has no MAC: the signature over the Encrypt string is the integrity check."""
    sealed = bytearray(base64.b64decode(POST_ENCRYPT))
    sealed[40] ^= 0x01  # lands inside the message text: decrypts "fine"
    tampered = base64.b64encode(bytes(sealed)).decode()
    with pytest.raises(CryptoError) as info:
        WECOM.verify(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, tampered)
    assert info.value.code == VALIDATE_SIGNATURE_ERROR


def test_truncated_ciphertext_is_refused() -> None:
    sealed = base64.b64decode(POST_ENCRYPT)
    assert _code(base64.b64encode(sealed[:-16]).decode()) == DECRYPT_AES_ERROR  # not 32-aligned
    assert _code(base64.b64encode(sealed[:-32]).decode()) in (
        DECRYPT_AES_ERROR,
        ILLEGAL_BUFFER,
        VALIDATE_RECEIVE_ID_ERROR,
    )
    assert _code("") == DECRYPT_AES_ERROR


def test_not_base64_is_refused() -> None:
    assert _code("not base64 at all!!") == DECODE_BASE64_ERROR


@pytest.mark.parametrize("last", [0, 33, 200])
def test_pad_value_out_of_range_is_refused(last: int) -> None:
    plain = b"\x00" * 16 + struct.pack(">I", 3) + b"abc" + WECOM_CORP.encode()
    plain += b"\x01" * (32 - len(plain) % 32 - 1) + bytes([last])
    assert _code(_seal_raw(WECOM, plain)) == DECRYPT_AES_ERROR


def test_inconsistent_pad_bytes_are_refused() -> None:
    padded = bytearray(pad(b"\x00" * 16 + struct.pack(">I", 3) + b"abc" + WECOM_CORP.encode()))
    padded[-2] ^= 0x01  # last byte says n, the byte before it disagrees
    assert _code(_seal_raw(WECOM, bytes(padded))) == DECRYPT_AES_ERROR


def test_length_beyond_the_buffer_is_refused() -> None:
    plain = pad(b"\x00" * 16 + struct.pack(">I", 10_000) + b"abc" + WECOM_CORP.encode())
    assert _code(_seal_raw(WECOM, plain)) == ILLEGAL_BUFFER


def test_unpad_accepts_every_legal_value() -> None:
    for n in range(1, 33):
        assert unpad(b"x" * 5 + bytes([n]) * n) == b"x" * 5


def test_forged_signature_is_refused_in_constant_time_compare() -> None:
    with pytest.raises(CryptoError) as info:
        WECOM.verify("0" * 40, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    assert info.value.code == VALIDATE_SIGNATURE_ERROR
    assert not signature_matches("", WECOM_TOKEN, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT)
    assert signature_matches(
        POST_SIGNATURE.upper(), WECOM_TOKEN, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT
    )


@pytest.mark.parametrize("key", ["short", "é" * 43, "!" * 43, WECOM_KEY + "A"])
def test_bad_encoding_aes_keys_are_refused(key: str) -> None:
    with pytest.raises(CryptoError) as info:
        decode_aes_key(key)
    assert info.value.code == ILLEGAL_AES_KEY


@settings(max_examples=200, deadline=None)
@given(data=st.text(max_size=600))
def test_arbitrary_ciphertext_strings_raise_only_crypto_errors(data: str) -> None:
    with contextlib.suppress(CryptoError):  # any other exception fails the test
        WECOM.decrypt(data)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=32, max_size=640).filter(lambda b: len(b) % 32 == 0))
def test_arbitrary_aligned_blocks_raise_only_crypto_errors(data: bytes) -> None:
    with contextlib.suppress(CryptoError):
        WECOM.decrypt(base64.b64encode(data).decode())
