"""The one error type the JT/T 808 codec lets out, and the errors bad input makes its
readers and writers raise (the only ones it turns into that type)."""

import struct

from construct import ConstructError


class CodecError(ConstructError):
    """Input that is not a valid JT/T 808 frame or body, or a value that cannot be encoded.

    It subclasses construct's own error so that adapters inside construct definitions can
    raise it and the message survives construct's path annotation.
    """


#: What bad input makes a body reader raise: construct's errors (our own checks' CodecError
#: among them), struct's (the fast paths' unpacking of too few bytes) and text that does not
#: decode. Readers check their bounds (construct's StreamError, struct.error, an explicit
#: CodecError): an IndexError, KeyError or ValueError out of one is a missed check, a bug.
DECODE_ERRORS: tuple[type[Exception], ...] = (ConstructError, struct.error, UnicodeError)
#: What a value that cannot be written makes a body writer raise: the same, and a number out
#: of its field's range (``bytes([256])``, ``int.to_bytes`` of a negative number).
ENCODE_ERRORS: tuple[type[Exception], ...] = DECODE_ERRORS + (ValueError, OverflowError)
