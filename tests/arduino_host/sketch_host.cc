// The TrainOnDevice sketch (an assembled Arduino library's examples/TrainOnDevice) on x86 against the
// Arduino_TensorFlowLite library's TFLM: setup(), then loop() while stdin has commands, as the board runs it
// with a Serial monitor. Exit code 1 when setup() reported an error (the sketch then ignores its input).
#include <stdio.h>

#include "Arduino.h"
#include "TrainOnDevice.ino"

HostSerial Serial;

int HostSerial::available() {
  const int c = getchar();
  return c == EOF ? 0 : ungetc(c, stdin) != EOF;
}
int HostSerial::read() { return getchar(); }
void HostSerial::print(const char* text) { fputs(text, stdout); }
void HostSerial::print(int value) { printf("%d", value); }
void HostSerial::print(unsigned long value) { printf("%lu", value); }
void HostSerial::print(double value, int digits) { printf("%.*f", digits, value); }

long random(long) { return 0; }
long random(long low, long) { return low; }

namespace tflite {
void InitializeTarget() {}  // the board's setup (system_setup.cpp, left out of this TFLM build)
}  // namespace tflite

int main() {
  setup();
  if (g_interpreter == nullptr) return 1;
  while (Serial.available()) loop();
  return 0;
}
