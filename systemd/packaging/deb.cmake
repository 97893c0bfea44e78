# CPack: `cpack -G DEB` in the build folder makes fleece_<version>_<arch>.deb with the
# layout of install.cmake under /usr (config in /etc, a conffile). Depends: is
# computed from the binaries by dpkg-shlibdeps (package dpkg-dev). The maintainer
# scripts in systemd/packaging/debian create the fleeced user (systemd-sysusers), enable the units,
# start fleeced on a fresh install and restart it on upgrade (see docs/operations.md).
set(CPACK_PACKAGE_NAME fleece)
set(CPACK_PACKAGE_VENDOR "fleece")
set(CPACK_PACKAGE_CONTACT "fleece maintainers <fleece@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "NBD server for image fleecing and incremental backup")
set(CPACK_PACKAGE_DESCRIPTION
    "fleeced serves disk images (raw, qcow2) over NBD, keeps persistent dirty bitmaps and
takes point-in-time fleecing snapshots of live disks for backup applications and virus
scanners; fleecectl manages it and is a reference backup client.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)  # the prefix used with CPACK_SET_DESTDIR
# Install with DESTDIR so the absolute /etc path of the config lands in the package.
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# systemd-sysusers and systemctl in the maintainer scripts.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "qemu-utils, libnbd-bin")
set(fleece_debian_dir ${CMAKE_SOURCE_DIR}/systemd/packaging/debian)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${fleece_debian_dir}/conffiles ${fleece_debian_dir}/postinst
    ${fleece_debian_dir}/prerm ${fleece_debian_dir}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_GENERATOR DEB)
include(CPack)
