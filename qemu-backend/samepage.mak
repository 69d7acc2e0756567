# SPDX-License-Identifier: GPL-2.0-or-later
#
# samepage: the devices of the minimal qemu-system-x86_64 that
# scripts/build-qemu builds (configure --without-default-devices
# --with-devices-x86_64=samepage), configs/devices/x86_64-softmmu/samepage.mak
# of the series.  The boards select what they cannot run without (serial,
# RTC, PIT, fw_cfg, pc-dimm, ACPI, ...).

# Boards: -M pc and -M q35 (-M none is always there).
CONFIG_I440FX=y
CONFIG_Q35=y

# virtio over PCI, plus the root ports libvirt puts them behind on q35.
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_BLK=y
CONFIG_VIRTIO_NET=y
CONFIG_VIRTIO_SERIAL=y
CONFIG_VIRTIO_BALLOON=y
CONFIG_VIRTIO_RNG=y
CONFIG_PCIE_PORT=y

# The boards' default display and libvirt's default USB controller for pc.
CONFIG_VGA_PCI=y
CONFIG_USB_UHCI=y

# What -M pc/q35 create unless told otherwise (-nodefaults, -nic none, ...):
# the default NICs, the parallel port, the HPET.
CONFIG_E1000_PCI=y
CONFIG_E1000E_PCI_EXPRESS=y
CONFIG_PARALLEL=y
CONFIG_HPET=y
