# Decompresses the gzip file on stdin to stdout with Python's gzip module.
# GzipFile reads every member of a multi-member file (RFC 1952 section 2.2) and checks
# each member's CRC-32 and ISIZE; it streams, so big files never sit whole in memory.
# Run by gzipcheck as: python3 -I -c "$(cat readers.py)"
import gzip
import shutil
import sys
import zlib

try:
    with gzip.GzipFile(fileobj=sys.stdin.buffer, mode="rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
    sys.stdout.buffer.flush()
except (OSError, EOFError, zlib.error) as e:
    sys.stderr.write("python gzip: %s: %s\n" % (type(e).__name__, e))
    sys.exit(1)
