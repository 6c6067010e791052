// The till page's comfort, on top of pages that work without it: scanning with the camera where
// the browser has a barcode detector, and an offline banner kept current without a reload.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var field = document.getElementById("qr");
  var actions = document.getElementById("scan-actions");
  var video = document.getElementById("camera-view");
  var status = document.getElementById("camera-status");
  if (field && actions && video && "BarcodeDetector" in window && navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    // The button exists only where the browser can read a QR code from the camera.
    var button = document.createElement("button");
    button.type = "button";
    button.id = "camera";
    button.className = "secondary";
    button.textContent = "Scan with the camera";
    actions.appendChild(button);
    var stream = null;
    var stop = function () {
      if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
      stream = null;
      video.hidden = true;
      button.textContent = "Scan with the camera";
    };
    button.addEventListener("click", function () {
      if (stream) { stop(); status.textContent = ""; return; }
      var detector;
      try { detector = new window.BarcodeDetector({ formats: ["qr_code"] }); } catch (e) { status.textContent = "This browser cannot read QR codes."; return; }
      navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }).then(function (s) {
        stream = s;
        video.srcObject = s;
        video.hidden = false;
        button.textContent = "Stop the camera";
        status.textContent = "Hold the member's code in front of the camera.";
        return video.play().then(function look() {
          if (!stream) return;
          return detector.detect(video).then(function (codes) {
            if (codes.length && codes[0].rawValue) {
              field.value = codes[0].rawValue;
              stop();
              status.textContent = "Code read.";
              field.form.requestSubmit ? field.form.requestSubmit() : field.form.submit();
              return;
            }
            return new Promise(function (r) { setTimeout(r, 250); }).then(look);
          });
        });
      }).catch(function () {
        stop();
        status.textContent = "The camera could not be used; scan with the handheld scanner instead.";
      });
    });
  }
  // Keep the offline banner current: ask the agent every 5 seconds.
  var banner = document.getElementById("offline");
  if (banner && window.fetch) {
    var poll = function () {
      fetch("/till/status", { credentials: "same-origin", cache: "no-store" }).then(function (r) {
        return r.ok ? r.json() : null;
      }).then(function (s) {
        if (!s) return;
        if (banner.textContent !== s.text) banner.textContent = s.text;
        banner.className = "banner " + (s.connecting ? "warn" : "offline");
        banner.hidden = !s.offline;
      }).catch(function () {
        banner.textContent = "This page cannot reach the loyalty agent on this computer. Check that it is running.";
        banner.hidden = false;
      });
    };
    setInterval(poll, 5000);
  }
});
