"""RocksDB 8.1.1, the release metashrew's rocksdb crate 0.21 links, through rocksdict 0.3.13.

    rocksdb8.py read DIR                 every record of DIR, opened read-only: "KEYHEX VALUEHEX"
    rocksdb8.py write DIR COMPRESSION    the records on stdin ("KEYHEX VALUEHEX"), written into a
                                         new database and flushed into tables so compressed

It moves bytes only: what the records mean is the Rust tests' business.
"""
import importlib.metadata
import sys

import rocksdict

VERSION = "0.3.13"


def options(compression=None):
    opts = rocksdict.Options(raw_mode=True)
    if compression is not None:
        opts.create_if_missing(True)
        opts.set_compression_type(getattr(rocksdict.DBCompressionType, compression)())
    return opts


def read(path):
    db = rocksdict.Rdict(path, options(), access_type=rocksdict.AccessType.read_only())
    for key, value in db.items():
        print(key.hex(), value.hex())
    db.close()


def write(path, compression):
    db = rocksdict.Rdict(path, options(compression))
    for line in sys.stdin:
        key, value = line.split()
        db[bytes.fromhex(key)] = bytes.fromhex(value)
    db.flush()
    db.close()


def main():
    found = importlib.metadata.version("rocksdict")
    if found != VERSION:
        sys.exit(f"rocksdict {found} is installed; these tests need {VERSION} (RocksDB 8.1.1): run ci/install-prereqs.sh")
    match sys.argv[1:]:
        case ["read", path]:
            read(path)
        case ["write", path, compression]:
            write(path, compression)
        case _:
            sys.exit(__doc__)


main()
