# klock_command_test(NAME RC OUT ARGS [ERR regex] [FILE file] [TIMEOUT seconds]): a ctest case
# that runs `klock` with ARGS ('|'-separated) in its own directory under this suite's build
# directory, and passes when the exit status is RC, stdout matches OUT, stderr matches ERR and
# FILE was written there (expect_command.cmake does the checking).
function(klock_command_test name rc out args)
  cmake_parse_arguments(PARSE_ARGV 4 opt "" "ERR;FILE;TIMEOUT" "")
  set(extra)
  if(DEFINED opt_ERR)
    list(APPEND extra "-DERR=${opt_ERR}")
  endif()
  if(DEFINED opt_FILE)
    list(APPEND extra "-DFILE=${opt_FILE}")
  endif()
  if(NOT DEFINED opt_TIMEOUT)
    set(opt_TIMEOUT 90)
  endif()
  add_test(NAME ${name}
    COMMAND ${CMAKE_COMMAND} -DKLOCK=$<TARGET_FILE:klock_cli> "-DARGS=${args}" -DRC=${rc} "-DOUT=${out}"
            -DWORKDIR=${CMAKE_CURRENT_BINARY_DIR}/out/${name} ${extra}
            -P ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/expect_command.cmake)
  set_tests_properties(${name} PROPERTIES TIMEOUT ${opt_TIMEOUT})
endfunction()
