"""The admin method table: what an administrator may see and change, in one place.

Two transports serve it: the local admin socket (relay/admin.py, hwctl's) and `POST /api/admin`
over HTTPS (relay/web/admin.py, madmail's envelope, used by the dashboard at /admin). Each
operation is declared once in relay.core.admin.table with the resource name madmail uses.
"""
