################################################################################
#
# chatmail-hwctl
#
################################################################################

# Nothing to download or build: hwctl ships in the chatmail-relay Python
# distribution. This package pulls in the libraries only the hardware
# process needs; image/post-build.sh drops its unit when it is not selected.
CHATMAIL_HWCTL_DEPENDENCIES = chatmail-relay

$(eval $(generic-package))
