"""Deployment to boards over SSH.

- session.py: SSHSession (paramiko; host-key checking, key/agent auth, shlex-quoted commands, SFTP)
- bundle.py:  the checksummed deploy bundle (ONNX, layer specs, agent, simulator, data sample)
- remote.py:  one remote agent run (connect, upload, run, clean up)
- agent.py:   runs ON THE BOARD with Python 3.10+ and numpy only (copied into each bundle)
"""
