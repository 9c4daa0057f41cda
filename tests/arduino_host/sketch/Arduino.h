// What the TrainOnDevice sketch uses of the Arduino core, on x86 for tests/test_firmware.py: Serial reads
// stdin and writes stdout, and random() is deterministic (the low end of its range), so a test can replay
// the sketch's training order.
#ifndef TINYTRAIN_TESTS_ARDUINO_HOST_ARDUINO_H_
#define TINYTRAIN_TESTS_ARDUINO_HOST_ARDUINO_H_

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct HostSerial {
  void begin(long) {}
  explicit operator bool() const { return true; }
  int available();
  int read();
  void print(const char* text);
  void print(int value);
  void print(unsigned long value);
  void print(double value, int digits = 2);
  template <typename T>
  void println(T value) {
    print(value);
    print("\n");
  }
  template <typename T>
  void println(T value, int digits) {
    print(value, digits);
    print("\n");
  }
};
extern HostSerial Serial;

long random(long below);
long random(long low, long below);
template <typename T>
T min(T a, T b) {
  return a < b ? a : b;
}

#endif  // TINYTRAIN_TESTS_ARDUINO_HOST_ARDUINO_H_
