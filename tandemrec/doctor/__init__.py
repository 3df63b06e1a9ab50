"""`tandemrec doctor`: is this install whole? Versions, kernels, the encoders reachable offline, and one
line per problem with the command that fixes it.

It checks what really breaks installs of this stack (../shared/STACK.md): torchrec missing (a CPU install
adds it by hand with `--no-deps`), fbgemm missing, the CUDA fbgemm-gpu on a machine without CUDA (pulled in
by a plain `pip install torchrec`, it overwrites fbgemm-gpu-cpu's `fbgemm_gpu/` folder; importing it then
fails with `libnvidia-ml.so.1: cannot open shared object file`, or its CPU ops are missing), both FAISS
wheels at once, a dependency outside tandemrec's ranges, and the packaged default encoders.

`diagnosis.diagnose()` runs the checks (`kernels`, `encoders`) into a `report.Report`; `probes` is the only
module that touches the environment, `fixes` says which versions and commands repair it. Nothing here imports
a heavy library at module level: each probe imports what it checks and reports a failure as a problem, so the
doctor runs on an install too broken for anything else. The CLI prints the report; nothing here prints.
"""
