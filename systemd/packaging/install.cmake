# What `cmake --install` lays out (paths relative to the install prefix, /usr for the
# .deb): bin/fleeced and bin/fleecectl, the systemd units in lib/systemd/system, the
# sysusers.d entry for the fleeced user, man pages, the docs in share/doc/fleece, and the
# example configuration as /etc/fleeced/fleeced.yaml (<prefix>/etc/fleeced/ when the
# prefix is not /usr). The prefix is read at install time (`cmake --install --prefix`),
# so ExecStart= in fleeced.service always names the fleeced that was installed.
# `make install` and cpack do not build first (build, then install or package): cpack on a
# built tree must not start compiling the test suite.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

install(TARGETS fleeced fleecectl RUNTIME DESTINATION bin)

install(FILES ${CMAKE_SOURCE_DIR}/systemd/fleeced.socket
              ${CMAKE_SOURCE_DIR}/systemd/fleeced-control.socket
        DESTINATION lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/fleeced.sysusers.conf
        DESTINATION lib/sysusers.d RENAME fleeced.conf)
install(FILES ${CMAKE_SOURCE_DIR}/docs/man/fleeced.8 DESTINATION share/man/man8)
install(FILES ${CMAKE_SOURCE_DIR}/docs/man/fleecectl.1 DESTINATION share/man/man1)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION share/doc/fleece)
# Listed at install time: a new docs/*.md needs no re-configure.
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/ DESTINATION share/doc/fleece
        FILES_MATCHING PATTERN "*.md" PATTERN "man" EXCLUDE)
install(FILES ${CMAKE_SOURCE_DIR}/systemd/fleeced.yaml DESTINATION share/doc/fleece/examples)

# The unit names the installed binary; /etc belongs to the /usr prefix.
install(CODE "
  set(fleece_unit_text \"\")
  file(READ \"${CMAKE_SOURCE_DIR}/systemd/fleeced.service\" fleece_unit_text)
  string(REPLACE \"/usr/bin/fleeced\" \"\${CMAKE_INSTALL_PREFIX}/bin/fleeced\"
         fleece_unit_text \"\${fleece_unit_text}\")
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(fleece_etc \"/etc\")
  else()
    set(fleece_etc \"\${CMAKE_INSTALL_PREFIX}/etc\")
    string(REPLACE \"/etc/fleeced/\" \"\${fleece_etc}/fleeced/\"
           fleece_unit_text \"\${fleece_unit_text}\")
  endif()
  set(fleece_unit \"${CMAKE_BINARY_DIR}/install-units/fleeced.service\")
  file(WRITE \"\${fleece_unit}\" \"\${fleece_unit_text}\")
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\" TYPE FILE
       FILES \"\${fleece_unit}\")
  file(INSTALL DESTINATION \"\${fleece_etc}/fleeced\" TYPE FILE
       FILES \"${CMAKE_SOURCE_DIR}/systemd/fleeced.yaml\")
")
