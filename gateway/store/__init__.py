"""Persistence: tables, database access, the pull queue, the blob store and the audit chain.

Storage code knows nothing of SOAP or XML. Durability order for anything with a payload: write and
fsync the blob (:mod:`gateway.store.blobs`) first, then commit the row naming it, so a committed row
never points at a missing blob.
"""
