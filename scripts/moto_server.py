"""moto's server with scripts/moto_fixes applied: what `make offline` runs as DynamoDB, SSM and SQS.

Usage: python -m scripts.moto_server -H 127.0.0.1 -p 5000 (moto.server's own options)
"""

from __future__ import annotations

from moto import server

from scripts import moto_fixes

if __name__ == "__main__":
    moto_fixes.apply()
    server.main()
