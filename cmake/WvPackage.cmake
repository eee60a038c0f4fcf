# The installed package: one shared library, libwv.so, made of every layer's static library,
# the public headers of config/, verbs/ and transport/, the tools, a CMake package
# (find_package(wv) -> wv::wv) and a pkg-config file (wv.pc).
#
# One shared library rather than the layers' static archives: an application then links one
# name, the private dependencies (toml++, fmt, PMIx) stay private, and the registration
# cache's munmap/mremap/madvise hooks interpose for every library of the process.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

add_library(wv SHARED cmake/wv_library.cc)
target_compile_definitions(wv PRIVATE WV_VERSION="${PROJECT_VERSION}")
add_library(wv::wv ALIAS wv)
# The objects of every layer; the layers' own targets after them bring their external
# libraries (PMIx, rdma-core, toml++, fmt) and nothing else: every symbol of the archives is
# already defined by the objects, so no archive member is pulled in twice.
set(wv_layers wv_transport wv_bootstrap wv_verbs wv_tcp_wire wv_config)
foreach(layer ${wv_layers})
  target_sources(wv PRIVATE $<TARGET_OBJECTS:${layer}>)
endforeach()
target_link_libraries(wv PRIVATE ${wv_layers})
# Every symbol resolved when the library is linked, not when an application is.
target_link_options(wv PRIVATE "LINKER:--no-undefined")
target_include_directories(wv PUBLIC
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/config/include>
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/verbs/include>
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/transport/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_compile_features(wv INTERFACE cxx_std_20)
set_target_properties(wv PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
                                    EXPORT_NAME wv)

install(TARGETS wv EXPORT wvTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY config/include/ verbs/include/ transport/include/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
install(EXPORT wvTargets NAMESPACE wv:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wv)
configure_package_config_file(cmake/wvConfig.cmake.in ${PROJECT_BINARY_DIR}/wvConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wv)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/wvConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/wvConfig.cmake ${PROJECT_BINARY_DIR}/wvConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/wv)
configure_file(cmake/wv.pc.in ${PROJECT_BINARY_DIR}/wv.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/wv.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
foreach(tool wv_info wvrun wv_perf)
  if(TARGET ${tool})
    install(TARGETS ${tool} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()
