"""hwctl: the appliance's hardware process (e-ink invite, LEDs, button, mDNS, USB).

It talks to the relay only through the relay's admin socket, so a hardware fault never stops mail.
Every device has a simulator backend, used when no hardware is present and in the tests.
"""
