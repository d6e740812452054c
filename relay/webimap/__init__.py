"""WebIMAP: mail for web and desktop clients over REST and a WebSocket (docs/webimap.md).

madmail's API (REST under /webimap/, the WebSocket at /webimap/ws, /websmtp/send), served by
the HTTPS listener (relay.web hosts the routes and hands WebSocket upgrades to `ws`), on the
same core as IMAP and SMTP: authenticate(), the store's mailboxes and change notifications,
and submit().
"""
