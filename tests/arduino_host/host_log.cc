// The log sink the Arduino core provides on a board (system_setup.cpp writes to Serial): stderr here.
#include <stdio.h>

#include "tensorflow/lite/micro/debug_log.h"

extern "C" void DebugLog(const char* s) { fputs(s, stderr); }
