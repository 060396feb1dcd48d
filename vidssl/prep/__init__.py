"""Dataset preparation: download / verify DAVIS-2017 and JHMDB, and per-video precomputation (JPEG frame
folders, optical flow, re-encoding for motion vectors), sharded for cluster arrays and resumable. Entry points:
`python -m data_prep.<step>` and `vidssl prep <step>`."""

STEPS = {"davis2017": "download or verify DAVIS-2017", "jhmdb": "download or verify JHMDB",
         "frames": "videos to JPEG frame folders", "flow": "optical flow for sts (TV-L1 or DIS), 8-bit",
         "reencode": "re-encode (fixed GOP, no B-frames) for motion-vector methods"}
