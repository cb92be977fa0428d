"""`specflash bench`: speed and acceptance of speculative decoding against plain decoding, same harness."""
