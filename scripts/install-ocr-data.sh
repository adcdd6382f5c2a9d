#!/usr/bin/env bash
# Install what pixseek's OCR needs from Debian and pip cannot bring: Tesseract's language data
# (the tesserocr wheel bundles libtesseract but no languages), OpenCV's shared libraries for
# RapidOCR, and the fonts the generated OCR test corpus renders with (pixseek.testing.text_images).
#   bash scripts/install-ocr-data.sh            English, German, French, Simplified Chinese
#   OCR_LANGS="eng deu" bash scripts/install-ocr-data.sh
# Does nothing when everything is there; without root or apt-get it says what is missing.
set -euo pipefail
langs=${OCR_LANGS:-eng deu fra chi-sim}
packages=()
for lang in $langs; do
    data=$(echo "$lang" | tr - _)
    ls /usr/share/tesseract-ocr/*/tessdata/"$data".traineddata >/dev/null 2>&1 \
        || packages+=("tesseract-ocr-$lang")
done
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || packages+=(fonts-dejavu-core)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf ] || packages+=(fonts-dejavu-extra)
[ -e /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf ] || packages+=(fonts-liberation)
[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || packages+=(fonts-wqy-zenhei)
libs=$(ldconfig -p 2>/dev/null || true)  # captured: grep -q on a pipe can SIGPIPE ldconfig under pipefail
[[ $libs == *libGL.so.1* ]] || packages+=(libgl1)
[[ $libs == *libgthread-2.0.so.0* ]] || packages+=(libglib2.0-0)
[ ${#packages[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null) \
        || { echo "install-ocr-data.sh: could not install ${packages[*]}" >&2; exit 1; }
else
    echo "install-ocr-data.sh: missing ${packages[*]}; install them with apt-get as root" >&2
    exit 1
fi
