"""Similar and duplicate images, prompt families and embeddings (docs/design.md, "Similar
images"): a library; the commands are thin faces over it.

:mod:`~mjvault.similarity.hashing` computes perceptual hashes, :mod:`~mjvault.similarity.store`
keeps them (``cache/hashes.sqlite``); :mod:`~mjvault.similarity.embeddings` keeps the optional
image vectors of a user's ONNX model (``cache/embeddings.sqlite``).
"""
