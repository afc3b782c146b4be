mod grow;
