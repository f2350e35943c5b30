//! ZeroMQ drivers for the `jupyter-handshake` core (filled in by the blocking-adapter work).
