/* Kernel and initrd extraction for VM backends: read straight out of a finished ext4 image
 * with libext2fs (no mount, no root). Private to imaged/. */
#ifndef SHED_IMAGED_KERNEL_H
#define SHED_IMAGED_KERNEL_H

#include <stdbool.h>

#include "common/shed_err.h"

/* Copies the newest (version order) regular file /boot/vmlinuz-* or /boot/vmlinux* of the
 * image to kernel_path, and the newest /boot/initrd.img-* to initrd_path, each through a
 * temp file + fsync + rename. A kind the image lacks has its old output file removed, so a
 * re-pulled image never keeps a stale kernel. Files are stored as found (a bzImage stays a
 * bzImage). A kernel larger than 256 MiB or an initrd larger than 1 GiB (sizes read from the inode,
 * before anything is copied) fails with SHED_E_INVALID_IMAGE; holes are kept. */
int kernel_extract(const char *rootfs_path, const char *kernel_path, const char *initrd_path,
                   bool *has_kernel, bool *has_initrd, struct shed_err *err);

#endif
