################################################################################
#
# chatmail-relay
#
################################################################################

# The package is this repository itself: the external tree lives one level down.
CHATMAIL_RELAY_SITE = $(BR2_EXTERNAL_CHATMAIL_PATH)/..
CHATMAIL_RELAY_SITE_METHOD = local
CHATMAIL_RELAY_VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' \
	$(BR2_EXTERNAL_CHATMAIL_PATH)/../pyproject.toml)
CHATMAIL_RELAY_SETUP_TYPE = setuptools
CHATMAIL_RELAY_LICENSE = MIT
# Only the Python package is built here; the image machinery, tests and any
# local virtualenv stay out of the build directory.
CHATMAIL_RELAY_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude .venv --exclude tests --exclude bench --exclude docs \
	--exclude buildroot-config --exclude image --exclude overlay \
	--exclude relay-data --exclude build

$(eval $(python-package))
