"""The one error type the JT/T 808 codec lets out."""

from construct import ConstructError


class CodecError(ConstructError):
    """Input that is not a valid JT/T 808 frame or body, or a value that cannot be encoded.

    It subclasses construct's own error so that adapters inside construct definitions can
    raise it and the message survives construct's path annotation.
    """
